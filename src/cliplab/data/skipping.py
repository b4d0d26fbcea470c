"""Counting skipped samples per epoch and stopping a run whose data is mostly bad.

Counts travel inside each batch (`batch["skipped"]`, `batch["skipped_examples"]`), so they add up
correctly whichever DataLoader worker produced the batch. `AccountedLoader` sums them in the main
process as batches are consumed and raises TooManyBadSamplesError once the skipped fraction passes
`max_skip_fraction` after at least `min_samples` samples were drawn this epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator

from cliplab.data.samples import TooManyBadSamplesError

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
