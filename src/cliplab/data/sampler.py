"""Which dataset indices each rank loads in each batch: seeded, epoch-aware, resumable.

Training: the epoch's order is a stream of seeded passes over the dataset, cut to `num_samples`
(default: one pass) and padded by continuing the stream so every rank gets the same number of full
batches. A pass is a permutation of the dataset, or for a mixture of sources its weighted pass
(`data.mixture.WeightedPasses`). Global batch b is
`order[b * B * W : (b + 1) * B * W]` and rank r takes its r-th slice of B, so ranks are disjoint and
the batches of an epoch depend only on (seed, epoch): starting at `start_batch` yields exactly the
batches an uninterrupted run had left.

Evaluation: each rank takes a contiguous block of the dataset in order, without padding.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np

from cliplab.data.mixture import WeightedPasses
from cliplab.data.seeding import mix_seed


class ResumableDistributedBatchSampler:
    """Yields this rank's batches of dataset indices, `list[int]` of length `batch_size`.

    `num_batches` is the epoch's batch count per rank; iteration covers batches
    `start_batch .. num_batches - 1`, and `len()` is how many that leaves. passes: the weighted
    passes of a mixture (None: permutations of the dataset).
    """

    def __init__(self, *, dataset_size: int, batch_size: int, rank: int, world_size: int,
                 seed: int, epoch: int, num_samples: int | None = None, shuffle: bool = True,
                 start_batch: int = 0, passes: WeightedPasses | None = None):
        if dataset_size < 1:
            raise ValueError(f"dataset_size must be >= 1, got {dataset_size}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, "
                             f"world_size={world_size}")
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        if passes is not None and sum(passes.sizes) != dataset_size:
            raise ValueError(f"the passes cover {sum(passes.sizes)} samples, the dataset has {dataset_size}")
        self.passes = passes
        self.pass_size = dataset_size if passes is None else passes.size
        self.num_samples = self.pass_size if num_samples is None else num_samples
        if self.num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.epoch = epoch
        self.shuffle = shuffle
        self.num_batches = math.ceil(self.num_samples / (batch_size * world_size))
        if not 0 <= start_batch <= self.num_batches:
            raise ValueError(f"start_batch must be in [0, {self.num_batches}] (batches per epoch), "
                             f"got {start_batch}")
        self.start_batch = start_batch
        self._order = self._epoch_order()

    def _epoch_order(self) -> np.ndarray:
        """int64 [num_batches * batch_size * world_size]: the epoch's samples, then the padding."""
        total = self.num_batches * self.batch_size * self.world_size
        passes = []
        for cycle in range(math.ceil(total / self.pass_size)):
            generator = np.random.default_rng(mix_seed(self.seed, self.epoch, cycle))
            if self.passes is not None:
                passes.append(self.passes.order(generator))
            elif self.shuffle:
                passes.append(generator.permutation(self.dataset_size))
            else:
                passes.append(np.arange(self.dataset_size))
        stream = np.concatenate(passes)
        # The epoch holds num_samples indices; the rest of the stream pads the last global batch.
        return stream[:total].astype(np.int64)

    def batch_indices(self, batch_index: int) -> list[int]:
        """This rank's dataset indices for batch `batch_index` of the epoch."""
        if not 0 <= batch_index < self.num_batches:
            raise IndexError(f"batch_index must be in [0, {self.num_batches}), got {batch_index}")
        start = (batch_index * self.world_size + self.rank) * self.batch_size
        return self._order[start:start + self.batch_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for batch_index in range(self.start_batch, self.num_batches):
            yield self.batch_indices(batch_index)

    def __len__(self) -> int:
        return self.num_batches - self.start_batch


class SequentialEvalBatchSampler:
    """This rank's contiguous block of indices, in order, in batches (the last may be short)."""

    def __init__(self, *, dataset_size: int, batch_size: int, rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, "
                             f"world_size={world_size}")
        per_rank = math.ceil(dataset_size / world_size)
        self.indices = range(min(rank * per_rank, dataset_size),
                             min((rank + 1) * per_rank, dataset_size))
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(0, len(self.indices), self.batch_size):
            yield list(self.indices[start:start + self.batch_size])

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)
