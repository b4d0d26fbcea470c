"""Several training sources mixed in one run: open_clip's `--train-data 'a::b'` with
`--train-data-upsampling-factors 1::4` (one factor per source, `::`-separated, any positive number).

A factor is how often each sample of its source is drawn relative to a source of factor 1 (open_clip's
meaning), so a source's share of the mixture is its size times its factor.

Map-style sources (csv, parquet): `MixtureDataset` reads them as one dataset, source after source
(sample id i is the i-th sample of that concatenation). An epoch's order (`data.sampler`) is a
stream of weighted passes (`WeightedPasses`): a pass holds every sample of source s floor(f_s) times
plus round((f_s - floor(f_s)) * n_s) (half to even) of its samples drawn without replacement, all
shuffled together, every draw seeded by (seed, epoch, pass). With every factor 1 a pass is a permutation of the
concatenation, exactly the order of a single dataset of that size. The sampler cuts the stream into
global batches as for one dataset, so a resumed run and any world size read the same samples, and
an epoch is one pass unless `train_num_samples` says otherwise.

Webdataset shards (streamed): the shards of every source form one list; with factors each shard is
drawn with replacement (`--dataset-resampled`, which factors need, as in open_clip) with its
source's factor as weight (`shard_weights`). A resumed epoch is then as exact as any webdataset
epoch (docs/data.md: approximate mid-epoch by design).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from cliplab.data.mixture_syntax import split_sources
from cliplab.data.samples import MapDataset, RawSample

class MixtureDataset:
    """Map-style datasets read as one, source after source (module docstring). `read(index, epoch)`
    is the owning source's read of its own index (its captions keyed by that index)."""

    def __init__(self, datasets: Sequence[MapDataset]):
        if not datasets:
            raise ValueError("a mixture needs at least one dataset")
        self.datasets = list(datasets)
        self.sizes = [len(dataset) for dataset in self.datasets]
        self.offsets = [0, *np.cumsum(self.sizes).tolist()]

    def __len__(self) -> int:
        return self.offsets[-1]

    def read(self, index: int, *, epoch: int) -> RawSample:
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        source = bisect.bisect_right(self.offsets, index) - 1
        return self.datasets[source].read(index - self.offsets[source], epoch=epoch)


@dataclass(frozen=True)
class WeightedPasses:
    """The passes of a mixture of sources with `sizes` and upsampling `factors` (module docstring).

    size: the samples of one pass; order(generator) -> int64 [size], one pass's dataset indices.
    """

    sizes: tuple[int, ...]
    factors: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.sizes) != len(self.factors):
            raise ValueError(f"{len(self.factors)} upsampling factors for {len(self.sizes)} sources")
        if self.size == 0:
            raise ValueError(f"upsampling factors {list(self.factors)} draw no sample of sources of {list(self.sizes)}")

    def _counts(self) -> list[tuple[int, int]]:
        """(whole copies, extra samples) per source."""
        counts = []
        for size, factor in zip(self.sizes, self.factors):
            whole = math.floor(factor)
            counts.append((whole, round((factor - whole) * size)))
        return counts

    @property
    def size(self) -> int:
        return sum(whole * size + extra for size, (whole, extra) in zip(self.sizes, self._counts()))

    def order(self, generator: np.random.Generator) -> np.ndarray:
        parts, offset = [], 0
        for size, (whole, extra) in zip(self.sizes, self._counts()):
            indices = np.tile(np.arange(size, dtype=np.int64), whole)
            if extra:
                indices = np.concatenate([indices, generator.choice(size, extra, replace=False).astype(np.int64)])
            parts.append(indices + offset)
            offset += size
        return generator.permutation(np.concatenate(parts))


def shard_weights(pattern: str, factors: Sequence[float]) -> tuple[list[str], list[float]]:
    """(the shards of every source of `pattern`, each shard's weight: its source's factor)."""
    from cliplab.data.webdataset_source import expand_shard_urls

    sources = split_sources(pattern)
    if len(sources) != len(factors):
        raise ValueError(f"{len(factors)} upsampling factors for the {len(sources)} sources of {pattern!r}")
    urls, weights = [], []
    for source, factor in zip(sources, factors):
        expanded = expand_shard_urls(source)
        urls += expanded
        weights += [float(factor)] * len(expanded)
    return urls, weights
