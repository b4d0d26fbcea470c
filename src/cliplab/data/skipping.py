"""Counting skipped samples per epoch and stopping a run whose data is mostly bad.

Counts travel inside each batch (`batch["skipped"]`, `batch["skipped_examples"]`), so they add up
correctly whichever DataLoader worker produced the batch. `AccountedLoader` sums them in the main
process as batches are consumed and raises TooManyBadSamplesError once the skipped fraction passes
`max_skip_fraction` after at least `min_samples` samples were drawn this epoch.

That check runs on each rank alone, so under DDP one rank may fail while the others carry on into
the next collective and wait there for the process-group timeout. `step_sample_counts` closes that
gap: at every step boundary the training loop passes it (`agree_on_step`) the batches it read and
the error its read raised (if any), in one all_reduce; every rank then raises the failing rank's
error, or all go on with the step's counts summed over ranks. The training state owns the running
counts and checkpoints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

from cliplab.data.samples import TooManyBadSamplesError
from cliplab.distributed.agreement import gather_objects, raise_if_any_rank_failed, sum_over_ranks

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
        self.loader, self.num_batches, self.what = loader, num_batches, what
        self.max_skip_fraction, self.min_samples = max_skip_fraction, min_samples
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


@dataclass(frozen=True)
class StepCounts:
    """What every rank agreed on at a step boundary: skipped / drawn samples of the step and the
    sum of each entry of the ranks' `votes`, all summed over ranks; failed_ranks: how many ranks'
    reads raised (equal on every rank, so every rank calls `raise_read_failures` or none does)."""

    skipped: int
    drawn: int
    votes: tuple[int, ...]
    failed_ranks: int


def agree_on_step(batches: list[dict], error: Exception | None, votes: Sequence[int] = ()) -> StepCounts:
    """The step's counts over every rank, in one all_reduce of a few ints (a collective: every rank
    calls it once per step, with the same number of votes).

    batches / error: what this rank's read gave (error None when it read them all). votes: other
    per-step integers every rank contributes, summed in the same all_reduce, so that a decision
    taken at each step boundary (the trainer's stop on a preemption signal) costs no collective of
    its own. A failed read is not raised here: the caller decides (`raise_read_failures`).
    """
    skipped = sum(int(batch["skipped"]) for batch in batches)
    drawn = skipped + sum(len(batch["sample_ids"]) for batch in batches)
    failed, skipped, drawn, *summed = sum_over_ranks([int(error is not None), skipped, drawn, *votes])
    return StepCounts(skipped=skipped, drawn=drawn, votes=tuple(summed), failed_ranks=failed)


def raise_read_failures(counts: StepCounts, error: Exception | None) -> None:
    """When any rank's read failed, raise on every rank the real cause
    (`cliplab.distributed.agreement.raise_if_any_rank_failed`); a collective only then."""
    if counts.failed_ranks:
        raise_if_any_rank_failed(error)


def step_sample_counts(batches: list[dict], error: Exception | None) -> tuple[int, int]:
    """(skipped, drawn) samples of one training step, summed over every rank's `batches`; when any
    rank has an error, every rank raises the real cause. A collective (`agree_on_step`)."""
    counts = agree_on_step(batches, error)
    raise_read_failures(counts, error)
    return counts.skipped, counts.drawn


def epoch_skip_record(*, skipped: int, drawn: int, local_examples: list[str]) -> dict[str, Any]:
    """The skip counts of an epoch so far, as the training log's "data" record.

    skipped / drawn: the epoch's counts over all ranks (equal on every rank). A collective when
    skipped > 0, so every rank gathers or none. Returns {"skipped_samples", "samples_drawn",
    "skip_fraction", "skipped_examples"}: up to 10 examples ("source: reason") from every rank's
    `local_examples` (its loader's `stats.examples`, which after a resume hold only what the resumed
    run met).
    """
    examples = list(local_examples[:10])
    if skipped:
        examples = [example for rank_examples in gather_objects(examples) for example in rank_examples]
    return {"skipped_samples": skipped, "samples_drawn": drawn,
            "skip_fraction": skipped / drawn if drawn else 0.0, "skipped_examples": examples[:10]}
