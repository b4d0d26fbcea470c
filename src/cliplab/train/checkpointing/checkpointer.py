"""The run's checkpointer: when a checkpoint is due, what goes into it, and resuming from one.

`Checkpointer` holds the objects a checkpoint saves (`CheckpointedParts`) and delegates the files to
`CheckpointManager` (atomic step directories, `latest`, pruning). A checkpointer for sharded state
offers the same `restore` / `save_if_due` over the same parts, overriding `restore` and `save`:
`dcp_checkpointer.DcpCheckpointer` under FSDP2 (every rank writes its DCP shards; it also resumes
from a single-file checkpoint, a DDP run's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from cliplab.checkpoint_files.step_dirs import step_dir_name
from cliplab.distributed.agreement import run_on_main
from cliplab.file_names import DCP_SHARDS_DIR
from cliplab.pretrained.cliplab_bundle import WEIGHTS_FILE
from cliplab.pretrained.dcp_reader import DcpModelReader, is_sharded_checkpoint
from cliplab.pretrained.key_maps import StateDictMismatchError, check_state_dict
from cliplab.pretrained.weight_files import SafetensorsReader
from cliplab.train.checkpointing.manager import CheckpointManager, restore_training_state
from cliplab.train.config import CheckpointConfig
from cliplab.train.state import TrainState
from cliplab.train.step.ema import WeightEma

EMA_STARTS_NOW = "note: {path} holds no EMA weights; the EMA starts from the resumed weights"


@dataclass(frozen=True)
class CheckpointedParts:
    """What a checkpoint holds besides the counters: the unwrapped model and its tokenizer (a loadable
    bundle), the optimiser, the GradScaler (or None), the objective heads (or None) and the EMA of
    the weights (or None)."""

    model: nn.Module
    tokenizer: Any
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    objectives: nn.Module | None
    ema: WeightEma | None = None

    @property
    def extra_modules(self) -> dict[str, nn.Module] | None:
        return {"objectives": self.objectives} if self.objectives is not None else None


def check_saved_shapes(path: Path, expected: Mapping[str, torch.Tensor]) -> None:
    """Raise StateDictMismatchError, one line naming the first missing, unexpected and mis-shaped
    tensors (name, shape in the checkpoint, shape in the model), when the model tensors of
    checkpoint `path` (single file or DCP shards; only their headers are read) do not fit
    `expected` (the resumed model's names and shapes, any device, meta included)."""
    reader = DcpModelReader(path / DCP_SHARDS_DIR) if is_sharded_checkpoint(path) else SafetensorsReader(path / WEIGHTS_FILE)
    try:
        check_state_dict(expected, reader.shapes, f"checkpoint {path}")
    except StateDictMismatchError as error:
        raise StateDictMismatchError(f"{error} (checkpoint first, then this run's model); resume it with the model "
                                     "it was trained with (--model, --set model.overrides=...)") from None


class Checkpointer:
    """Saves every `save_every_steps` steps, every `save_frequency` epochs and at the end of the run,
    at most once per step; restores a run from a checkpoint directory."""

    def __init__(self, config: CheckpointConfig, manager: CheckpointManager, parts: CheckpointedParts, *,
                 saved_config: dict):
        self.config, self.manager, self.parts = config, manager, parts
        self.saved_config = saved_config
        self.last_saved_step = -1

    def latest(self) -> Path | None:
        """The checkpoint the run's `latest` pointer names (None before the first save)."""
        return self.manager.latest()

    def restore(self, path: Path, *, rank: int) -> TrainState:
        """Restore the parts from checkpoint `path` (verified by `run_dir.resolve_resume`)."""
        parts = self.parts
        check_saved_shapes(path, parts.model.state_dict())
        state = restore_training_state(path, model=parts.model, optimizer=parts.optimizer, scaler=parts.scaler,
                                       rank=rank, extra_modules=parts.extra_modules)
        if parts.ema is not None and not parts.ema.load(path) and rank == 0:
            print(EMA_STARTS_NOW.format(path=path))
        self.last_saved_step = state.step
        return state

    def is_due(self, state: TrainState, *, epoch_done: bool, finished: bool) -> bool:
        config = self.config
        return bool((config.save_every_steps and state.step % config.save_every_steps == 0)
                    or (epoch_done and config.save_frequency and state.epoch % config.save_frequency == 0)
                    or finished)

    def save_if_due(self, state: TrainState, *, epoch_done: bool, finished: bool) -> None:
        """A collective (every rank calls it; see `CheckpointManager.save`)."""
        if self.is_due(state, epoch_done=epoch_done, finished=finished) and self.last_saved_step != state.step:
            self.save(state)
            self.last_saved_step = state.step

    def save_now(self, state: TrainState) -> Path | None:
        """The directory of the checkpoint of `state.step`, written now unless this run wrote it
        already; None before the first step (nothing trained, nothing to save). A collective."""
        if state.step == 0:
            return None
        path = self.manager.directory / step_dir_name(state.step)
        if self.last_saved_step != state.step or not run_on_main(path.is_dir):  # resumed from elsewhere
            self.save(state)
            self.last_saved_step = state.step
        return path

    def save(self, state: TrainState) -> None:
        """Write the checkpoint of `state` now (a collective)."""
        parts = self.parts
        self.manager.save(model=parts.model, tokenizer=parts.tokenizer, optimizer=parts.optimizer,
                          scaler=parts.scaler, state=state, config=self.saved_config,
                          extra_modules=parts.extra_modules, ema=parts.ema)
