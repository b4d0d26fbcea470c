"""The checkpointer of an FSDP2 run until sharded DCP checkpoints land: today's single-file
checkpoints, gathered.

Saving all-gathers the model, the objective heads and the AdamW state one tensor at a time into
the unsharded format on rank 0 (`sharded_state`), which writes the usual atomic step directory;
the other ranks keep nothing. Resuming reads the weights file one tensor at a time and the
optimiser state memory-mapped, and each rank copies out its own rows. So the files, and what
resumes from them, are the same as a DDP run's: an FSDP2 run resumes from a DDP checkpoint and the
other way round, on any number of ranks. Rank 0 holds the whole model and optimiser state on the
CPU while saving: fine for the sizes tested here, not for a model whose optimiser state does not
fit one host's memory (that is what the DCP checkpointer is for).
"""

from __future__ import annotations

from pathlib import Path

from cliplab.errors import UserError
from cliplab.pretrained.weight_files import SafetensorsReader
from cliplab.train.checkpoint import read_checkpoint, restore_run_state
from cliplab.train.checkpointer import Checkpointer
from cliplab.train.parallelism import ParallelModel, model_for_checkpoint
from cliplab.train.sharded_state import (ShardSource, gather_optimizer_state, load_optimizer_state, load_shards,
                                         rows_of)
from cliplab.train.state import TrainState


class GatheringCheckpointer(Checkpointer):
    """A Checkpointer over the parts of a sharded run (`parallel`); `is_main` keeps the gathered state."""

    def __init__(self, *args, parallel: ParallelModel, is_main: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.parallel, self.is_main = parallel, is_main

    def save(self, state: TrainState) -> None:
        parts = self.parts
        model, heads = model_for_checkpoint(self.parallel, keep=self.is_main)
        optimizer_state = gather_optimizer_state(parts.optimizer, list(self.parallel.parameter_order),
                                                 keep=self.is_main)
        self.manager.save(model=model, tokenizer=parts.tokenizer, optimizer=None, scaler=parts.scaler, state=state,
                          config=self.saved_config, optimizer_state=optimizer_state,
                          extra_states={"objectives": heads} if heads is not None else {})

    def restore(self, path: Path, *, rank: int) -> TrainState:
        weights_file, payload = read_checkpoint(path, mmap=True)
        load_shards(self.parallel.trainable, self._source(path, SafetensorsReader(weights_file), payload))
        load_optimizer_state(self.parts.optimizer, payload["optimizer"], list(self.parallel.parameter_order))
        return restore_run_state(payload, scaler=self.parts.scaler, rank=rank)

    def _source(self, path: Path, weights: SafetensorsReader, payload: dict) -> ShardSource:
        """Names of the trainable module -> the checkpoint's values (weights file, heads' state)."""
        with_heads = self.parts.objectives is not None
        heads = payload["extra_modules"].get("objectives", {}) if with_heads else {}
        expected = {name[len("model."):] if with_heads else name
                    for name in self.parallel.model.state_dict() if not name.endswith("_extra_state")}

        def read(name: str):
            if with_heads and name.startswith("objectives."):
                return heads[name[len("objectives."):]]
            return weights.read(name[len("model."):] if with_heads else name)

        from cliplab.train.sharding import canonical_name

        names = {canonical_name(name) for name in expected}
        if names != set(weights.shapes):
            raise UserError(f"checkpoint {path} was saved from another model: missing "
                            f"{sorted(names - set(weights.shapes))}, unexpected {sorted(set(weights.shapes) - names)}; "
                            "resume it with the --model and overrides it was trained with")
        return rows_of(read)
