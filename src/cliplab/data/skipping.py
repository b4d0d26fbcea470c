"""Counting skipped samples per epoch and stopping a run whose data is mostly bad.

Counts travel inside each batch (`batch["skipped"]`, `batch["skipped_examples"]`), so they add up
correctly whichever DataLoader worker produced the batch. `AccountedLoader` sums them in the main
process as batches are consumed and raises TooManyBadSamplesError once the skipped fraction passes
`max_skip_fraction` after at least `min_samples` samples were drawn this epoch.

That check runs on each rank alone, so under DDP one rank may fail while the others carry on into
the next collective and wait there for the process-group timeout. `SkipCounter.record_step` closes
that gap: at every step boundary the training loop passes it the batches it read and the error its
read raised (if any); one all-reduce sums the counts over ranks and tells every rank whether any
rank failed, and then every rank raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import torch
import torch.distributed as dist

from cliplab.data.samples import TooManyBadSamplesError
from cliplab.distributed.collectives import is_distributed, world_info

MAX_EXAMPLES_KEPT = 20


@dataclass
class SkipStats:
    """Counts for one epoch on one rank: samples drawn (kept + skipped) and skipped."""

    samples_drawn: int = 0
    samples_skipped: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def skip_fraction(self) -> float:
        return self.samples_skipped / self.samples_drawn if self.samples_drawn else 0.0

    def add_batch(self, batch: dict) -> None:
        skipped = int(batch["skipped"])
        self.samples_drawn += len(batch["sample_ids"]) + skipped
        self.samples_skipped += skipped
        room = MAX_EXAMPLES_KEPT - len(self.examples)
        if room > 0:
            self.examples.extend(batch["skipped_examples"][:room])


def check_skip_threshold(stats: SkipStats, *, max_skip_fraction: float, min_samples: int,
                         what: str = "dataset") -> None:
    """Raise TooManyBadSamplesError when past `min_samples` draws more than the allowed share failed."""
    if stats.samples_drawn >= min_samples and stats.skip_fraction > max_skip_fraction:
        raise TooManyBadSamplesError(
            f"{stats.samples_skipped} of {stats.samples_drawn} samples drawn from the {what} were "
            f"bad ({stats.skip_fraction:.1%} > max_skip_fraction {max_skip_fraction:.1%}); "
            "examples:\n  " + "\n  ".join(stats.examples[:10]))


class AccountedLoader:
    """Iterates a DataLoader of assembled batches, keeping `stats` and enforcing the threshold.

    `len()` is the number of batches iteration will yield (training) or at most yield (evaluation,
    where batches emptied by skipping are dropped after their counts are recorded).
    """

    def __init__(self, loader: Iterable[dict], *, num_batches: int | None, max_skip_fraction: float,
                 min_samples: int, what: str):
        self.loader = loader
        self.num_batches = num_batches
        self.max_skip_fraction = max_skip_fraction
        self.min_samples = min_samples
        self.what = what
        self.stats = SkipStats()

    def __iter__(self) -> Iterator[dict]:
        for batch in self.loader:
            self.stats.add_batch(batch)
            check_skip_threshold(self.stats, max_skip_fraction=self.max_skip_fraction,
                                 min_samples=self.min_samples, what=self.what)
            if len(batch["sample_ids"]):
                yield batch

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError(f"the number of batches of {self.what} is unknown (webdataset without "
                            "a declared number of samples)")
        return self.num_batches


class SkipCounter:
    """Skipped-sample counts of a training run, summed over ranks at every step boundary.

    total: samples skipped since the run began. epoch_skipped / epoch_drawn: samples skipped and
    drawn (kept + skipped) in the current epoch so far. All three count every rank, are equal on
    every rank, and are checkpointed by the loop (a resumed run continues them).
    """

    def __init__(self, *, total: int = 0, epoch_skipped: int = 0, epoch_drawn: int = 0):
        self.total = total
        self.epoch_skipped = epoch_skipped
        self.epoch_drawn = epoch_drawn

    def counts(self) -> tuple[int, int, int]:
        """(total, epoch_skipped, epoch_drawn)."""
        return self.total, self.epoch_skipped, self.epoch_drawn

    def record_step(self, batches: list[dict], error: Exception | None,
                    device: torch.device | str = "cpu") -> None:
        """Add one step's batches (this rank's), and stop every rank if any rank's read failed.

        A collective: every rank calls it once per step, before the forward pass. `error` is what
        this rank's read of the step's batches raised (None when it read them all). When any rank
        has one, every rank raises: the failing ranks their own error, the others
        TooManyBadSamplesError (or RuntimeError for another kind of failure) quoting it.
        """
        skipped = sum(int(batch["skipped"]) for batch in batches)
        drawn = skipped + sum(len(batch["sample_ids"]) for batch in batches)
        counts = torch.tensor([skipped, drawn, int(error is not None)], dtype=torch.int64,
                              device=device)
        if is_distributed():
            dist.all_reduce(counts)
        skipped, drawn, failed_ranks = (int(value) for value in counts.tolist())
        self.total += skipped
        self.epoch_skipped += skipped
        self.epoch_drawn += drawn
        if failed_ranks:
            _raise_on_every_rank(error)

    def report_epoch(self, local_examples: list[str], *, epoch_over: bool) -> dict[str, Any]:
        """The current epoch's counts so far; resets them when `epoch_over`.

        A collective when any sample was skipped this epoch (a count equal on every rank, so all
        ranks gather or none). Returns {"skipped_samples", "samples_drawn", "skip_fraction",
        "skipped_examples"}: counts over all ranks, and up to 10 examples ("source: reason") from
        every rank's `local_examples` (its loader's `stats.examples`, which after a resume hold only
        what the resumed run met).
        """
        examples = list(local_examples[:10])
        if self.epoch_skipped and is_distributed():
            gathered: list[Any] = [None] * world_info()[1]
            dist.all_gather_object(gathered, examples)
            examples = [example for rank_examples in gathered for example in rank_examples]
        record = {"skipped_samples": self.epoch_skipped, "samples_drawn": self.epoch_drawn,
                  "skip_fraction": self.epoch_skipped / self.epoch_drawn if self.epoch_drawn else 0.0,
                  "skipped_examples": examples[:10]}
        if epoch_over:
            self.epoch_skipped = self.epoch_drawn = 0
        return record


def _raise_on_every_rank(error: Exception | None) -> None:
    """Called on every rank once some rank's data failed: share what failed, then raise."""
    if is_distributed():
        failures: list[Any] = [None] * world_info()[1]
        dist.all_gather_object(failures, None if error is None else (type(error).__name__, str(error)))
    if error is not None:
        raise error
    rank, (kind, message) = next((rank, failure) for rank, failure in enumerate(failures)
                                 if failure is not None)
    text = f"rank {rank} stopped on its training data: {message}"
    if kind == TooManyBadSamplesError.__name__:
        raise TooManyBadSamplesError(text)
    raise RuntimeError(f"{text} ({kind})")
