"""`TrainState`: every counter of a run, owned in one place and checkpointed as one dict.

The components report what happened (samples skipped this step, a step skipped as non-finite, a
step done); the state counts it. Nothing else keeps a copy, so what a checkpoint holds is exactly
what the run counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(kw_only=True)
class TrainState:
    """The counters of a run.

    step: optimiser steps completed. epoch / batch_in_epoch: the position of the next batch to read
    (batches counted in micro-batches of this rank's loader). samples_seen: global samples consumed.
    skipped_samples: bad samples skipped since the run began; epoch_skipped_samples /
    epoch_samples_drawn: those skipped and those drawn (kept + skipped) in the current epoch so far
    (all three summed over ranks, equal on every rank). nonfinite_skips: steps skipped for a
    non-finite loss or gradient; consecutive_nonfinite: how many of the latest steps in a row were.
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    samples_seen: int = 0
    skipped_samples: int = 0
    epoch_skipped_samples: int = 0
    epoch_samples_drawn: int = 0
    nonfinite_skips: int = 0
    consecutive_nonfinite: int = 0
    extra: dict = field(default_factory=dict)

    def record_step_samples(self, skipped: int, drawn: int) -> None:
        """Count one step's samples over all ranks (`cliplab.data.skipping.step_sample_counts`)."""
        self.skipped_samples += skipped
        self.epoch_skipped_samples += skipped
        self.epoch_samples_drawn += drawn

    def start_epoch_sample_counts(self) -> None:
        self.epoch_skipped_samples = self.epoch_samples_drawn = 0

    def record_nonfinite(self, skipped: bool) -> None:
        """Count a step that was (or was not) skipped for a non-finite loss or gradient."""
        if skipped:
            self.nonfinite_skips += 1
            self.consecutive_nonfinite += 1
        else:
            self.consecutive_nonfinite = 0

    def finish_step(self, *, micro_batches: int, global_micro_batch: int) -> None:
        """One optimiser step over `micro_batches` batches per rank, `global_micro_batch` samples each."""
        self.step += 1
        self.samples_seen += global_micro_batch * micro_batches
        self.batch_in_epoch += micro_batches

    def finish_epoch_if_over(self, *, micro_batches: int, batches_per_epoch: int) -> bool:
        """Move to the next epoch when another step would not fit in this one; True when it did."""
        if self.batch_in_epoch + micro_batches <= batches_per_epoch:
            return False
        self.epoch += 1
        self.batch_in_epoch = 0
        return True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainState":
        """The state saved by `to_dict`; counters a checkpoint from an older cliplab lacks start at 0."""
        return cls(**values)
