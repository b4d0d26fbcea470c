"""The checkpointer of an FSDP2 run: step directories whose weights and optimiser state are DCP shards.

Layout of one checkpoint directory (the manifest lists every other file, at any depth):
    shards/                           DCP: `.metadata` + `__<rank>_0.distcp` per rank; the model,
                                      the objective heads, the AdamW state (`dcp_state`) and the
                                      EMA's averages of a run with one (`ema.<name>`, `step.ema`)
    config.json, tokenizer files      as in a bundle (`cliplab.pretrained.cliplab_bundle.save_description`;
                                      lora.json for a model with LoRA adapters)
    train_state.pt                    counters and data position, GradScaler, every rank's RNG
                                      states, the saved run config (`train_state_file`: the payload
                                      of a single-file checkpoint without "optimizer" and
                                      "extra_modules")
    manifest.json                     written last (`cliplab.checkpoint_files.manifest`)

Saving, a collective: rank 0 stages `.tmp-step_XXXXXXX` (`CheckpointManager.stage`, a name every
rank can compute, shared with `run_on_main`); every rank writes its own shards into it
(`dcp.save`, which returns on every rank only after the coordinator wrote `.metadata`, so after
every rank's shards are on disk); rank 0 then writes the small files and publishes
(`CheckpointManager.publish`: fsync, manifest over every file of every rank, rename, `latest`).
A kill of any rank before the manifest leaves a staging directory that resume never reads (and
that the next start removes): resume takes the previous checkpoint, which still verifies. A shard
lost or damaged afterwards fails the manifest, and resume falls back the same way.

Resuming (`restore`) reads this rank's rows of every tensor from the shards of whatever number of
ranks wrote them (`dcp_state.load_sharded`): a run checkpointed on N ranks resumes on M. Every file
is read without running anything it contains: DCP's `.metadata` and the pickled values in the
shards through `cliplab.pretrained.dcp_files`, `train_state.pt` through `read_train_state`; a
hostile file fails on every rank in the same line naming it. No rank
holds the whole model or optimiser state while saving or loading. The RNG states follow
`checkpoint.restore_run_state`: a rank the saved run had gets its own back, a rank it did not have
gets fresh generators seeded from (run seed, rank, step).

A single-file checkpoint (a DDP run's, or one from before sharded checkpoints) resumes an FSDP2
run too: each rank reads the weights file one tensor at a time and the optimiser state
memory-mapped, and copies out its own rows (`sharded_state.load_shards`, `load_optimizer_state`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cliplab.distributed.agreement import run_on_main
from cliplab.errors import UserError
from cliplab.file_names import DCP_SHARDS_DIR
from cliplab.models.lora import lora_spec_of, write_lora_spec
from cliplab.pretrained.cliplab_bundle import save_description
from cliplab.pretrained.dcp_reader import DcpModelReader, is_sharded_checkpoint
from cliplab.pretrained.ema_weights import EMA_PREFIX
from cliplab.pretrained.weight_files import SafetensorsReader
from cliplab.train.checkpointing.atomic_files import save_torch
from cliplab.train.checkpointing.checkpointer import EMA_STARTS_NOW, Checkpointer, check_saved_shapes
from cliplab.train.checkpointing.dcp_state import load_sharded, save_sharded
from cliplab.train.checkpointing.manager import read_checkpoint, restore_run_state
from cliplab.train.checkpointing.payload import TRAIN_STATE_FILE, gather_rng_states, read_train_state, training_payload
from cliplab.train.parallel.build import ParallelModel
from cliplab.train.parallel.fsdp import canonical_name
from cliplab.train.parallel.fsdp_state import ShardSource, load_optimizer_state, load_shards, rows_of
from cliplab.train.state import TrainState

EMA_SECTION = EMA_PREFIX.rstrip(".")


class DcpCheckpointer(Checkpointer):
    """The Checkpointer of an FSDP2 run (`parallel`: its sharded modules); see the module docstring."""

    def __init__(self, *args, parallel: ParallelModel, **kwargs):
        super().__init__(*args, **kwargs)
        self.parallel = parallel

    def save(self, state: TrainState) -> None:
        """Write checkpoint `step_<state.step>` (see the module docstring). A collective."""
        rng_states = gather_rng_states()
        staging = run_on_main(lambda: self.manager.stage(state.step))
        save_sharded(staging / DCP_SHARDS_DIR, self.parallel.trainable, self.parts.optimizer, rename=canonical_name,
                     extra=self._ema_section())
        run_on_main(lambda: self._publish(staging, state, rng_states))

    def _publish(self, staging: Path, state: TrainState, rng_states: list) -> Path:
        parts = self.parts
        try:
            save_description(parts.model.config, parts.tokenizer, staging)
            write_lora_spec(lora_spec_of(parts.model), staging)
            save_torch(training_payload(state=state, scaler=parts.scaler, rng_states=rng_states,
                                        config=self.saved_config), staging / TRAIN_STATE_FILE)
            return self.manager.publish(staging, state.step)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def restore(self, path: Path, *, rank: int) -> TrainState:
        """Restore the parts from checkpoint `path` (verified by `run_dir.resolve_resume`): sharded,
        written by any number of ranks, or a single file. A collective."""
        check_saved_shapes(path, self._model_tensors())
        ema = self.parts.ema
        if is_sharded_checkpoint(path):
            shards = path / DCP_SHARDS_DIR
            has_ema = ema is not None and bool(DcpModelReader(shards, prefix=EMA_PREFIX, required=False).shapes)
            extra = self._ema_section() if has_ema else None
            load_sharded(shards, self.parallel.trainable, self.parts.optimizer, rename=canonical_name, extra=extra)
            if has_ema:
                ema.take_sharded_state(extra[EMA_SECTION])
            payload = read_train_state(path / TRAIN_STATE_FILE)
        else:
            weights_file, payload = read_checkpoint(path, mmap=True)
            load_shards(self.parallel.trainable, self._single_file_source(path, SafetensorsReader(weights_file), payload))
            load_optimizer_state(self.parts.optimizer, payload["optimizer"], list(self.parallel.parameter_order))
            has_ema = ema is not None and ema.load(path)
        if ema is not None and not has_ema and rank == 0:
            print(EMA_STARTS_NOW.format(path=path))
        state = restore_run_state(payload, scaler=self.parts.scaler, rank=rank)
        self.last_saved_step = state.step
        return state

    def _ema_section(self) -> dict[str, dict] | None:
        """The EMA's averages as the `ema` section of the DCP shards (None without an EMA)."""
        return None if self.parts.ema is None else {EMA_SECTION: self.parts.ema.sharded_state()}

    def _model_tensors(self) -> dict[str, torch.Tensor]:
        """The model's tensors under the names a checkpoint gives them (whole shapes: DTensors)."""
        return {canonical_name(name): tensor for name, tensor in self.parallel.model.state_dict().items()
                if not name.endswith("_extra_state")}

    def _single_file_source(self, path: Path, weights: SafetensorsReader, payload: dict) -> ShardSource:
        """Names of the trainable module -> a single-file checkpoint's values (weights file, heads' state)."""
        with_heads = self.parts.objectives is not None
        heads = payload["extra_modules"].get("objectives", {}) if with_heads else {}
        names = set(self._model_tensors())
        if names != set(weights.shapes):
            raise UserError(f"checkpoint {path} was saved from another model: missing "
                            f"{sorted(names - set(weights.shapes))}, unexpected {sorted(set(weights.shapes) - names)}; "
                            "resume it with the --model and overrides it was trained with")

        def read(name: str):
            if with_heads and name.startswith("objectives."):
                return heads[name[len("objectives."):]]
            return weights.read(name[len("model."):] if with_heads else name)
        return rows_of(read)
