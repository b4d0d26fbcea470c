"""The training data of a run: the dataset read once, one loader per epoch, the batches of a step.

Per rank and step: `accum_freq` micro-batches of `batch_size`. Global micro-batch b of an epoch is
a fixed slice of the epoch's seeded global order, and rank r reads the r-th part of it
(`cliplab.data.sampler`); captions and augmentations are keyed by (seed, epoch, sample). So with the
same global batch (batch_size * world_size) a step reads the same samples on 1, 2 or 4 ranks, and
the data position a checkpoint holds, counted in global micro-batches, means the same on any number
of ranks: a run resumes on a different world size (`check_resumable`) as torchrun's elastic
`--nnodes MIN:MAX` may restart it. (Webdataset shards are split between ranks, so there the samples
of a step depend on the world size.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

from cliplab.data import DataConfig
from cliplab.data.class_subset import ClassSubset
from cliplab.data.loader import build_map_dataset, build_train_loader
from cliplab.data.samples import MapDataset
from cliplab.data.seeding import preserved_global_rngs
from cliplab.data.sources import data_source
from cliplab.errors import UserError
from cliplab.train.config import ConfigError, LoopConfig
from cliplab.train.parallel.processes import DistributedContext
from cliplab.train.state import TrainState


def build_train_dataset(data: DataConfig) -> MapDataset | None:
    """The map-style training dataset, read once for all epochs (None for a streamed source:
    webdataset shards), restricted to `data.train_classes` when set."""
    if data_source(data.dataset_type).map_style is None:
        return None
    dataset = build_map_dataset(data, train=True)
    if data.train_classes is None:
        return dataset
    return ClassSubset(dataset, data.train_classes, what=f"the {data.dataset_type} training data")


def _next_batch(iterator: Iterator[dict]) -> dict:
    """next(iterator) without disturbing the global RNGs (DataLoader draws a seed from torch's when
    an epoch's iterator starts), so the training RNG stream is the same in a resumed run."""
    with preserved_global_rngs():
        return next(iterator)


class TrainData:
    """This rank's training batches, epoch after epoch.

    `start_epoch(epoch, start_batch)` opens an epoch's loader (its order and captions seeded by
    epoch); `read_step()` reads the next step's micro-batches. batches_per_epoch: per rank, counted
    in micro-batches; steps_per_epoch: optimiser steps an epoch holds.
    """

    def __init__(self, data: DataConfig, loop: LoopConfig, context: DistributedContext, *,
                 transform: Callable, tokenizer: Callable):
        self.config, self.loop, self.context = data, loop, context
        self.transform, self.tokenizer = transform, tokenizer
        self.dataset = build_train_dataset(data)
        self.micro_batches = loop.accum_freq
        self.global_micro_batch = loop.batch_size * context.world_size
        self.loader, self.batches_per_epoch, self._iterator = None, 0, iter(())

    def start_epoch(self, epoch: int, start_batch: int) -> None:
        self.loader, self.batches_per_epoch = build_train_loader(
            self.config, transform=self.transform, tokenize=self.tokenizer, batch_size=self.loop.batch_size,
            rank=self.context.rank, world_size=self.context.world_size, seed=self.loop.seed, epoch=epoch,
            start_batch=start_batch, dataset=self.dataset)
        if self.steps_per_epoch == 0:
            raise ConfigError("loop.accum_freq", self.micro_batches, f"must be at most the {self.batches_per_epoch} "
                              f"batches of {self.loop.batch_size} an epoch has per rank: lower loop.batch_size or "
                              "loop.accum_freq, or add data")
        self._iterator = iter(self.loader)

    @property
    def step_samples(self) -> int:
        """Samples of one optimiser step over all ranks: batch_size * world_size * accum_freq."""
        return self.global_micro_batch * self.micro_batches

    def check_resumable(self, state: TrainState, checkpoint: Path) -> None:
        """Raise a UserError when `checkpoint` (its counters `state`) was trained with another
        global batch: its data position would name other samples. The world size may differ."""
        if state.step == 0 or state.samples_seen == state.step * self.step_samples:
            return
        saved, ranks = state.samples_seen / state.step, self.context.world_size
        per_rank = saved / (ranks * self.micro_batches)
        hint = (f"--batch-size {int(per_rank)}" if per_rank == int(per_rank)
                else f"a --batch-size and --accum-freq whose product times {ranks} ranks is {saved:g}")
        raise UserError(f"checkpoint {checkpoint} was trained with {saved:g} samples per step and this run takes "
                        f"{self.step_samples} (batch_size {self.loop.batch_size} x {ranks} ranks x accum_freq "
                        f"{self.micro_batches}); resume it with {hint}, so that its steps read the same samples")

    @property
    def steps_per_epoch(self) -> int:
        return self.batches_per_epoch // self.micro_batches

    def total_steps(self) -> int:
        """Optimiser steps of the run: loop.epochs epochs, or loop.max_steps when that is fewer."""
        total = self.loop.epochs * self.steps_per_epoch
        return total if self.loop.max_steps is None else min(total, self.loop.max_steps)

    def read_step(self) -> tuple[list[dict], Exception | None]:
        """The next step's batch dicts, and the error that ended the read early (None when none did).

        The error is returned, not raised: the other ranks must hear of it first
        (`cliplab.data.skipping.step_sample_counts`), or they would wait for this one in the next
        collective until the process-group timeout."""
        batches: list[dict] = []
        try:
            for _ in range(self.micro_batches):
                batches.append(_next_batch(self._iterator))
        except Exception as error:  # noqa: BLE001 - raised on every rank by step_sample_counts
            return batches, error
        return batches, None

    @property
    def skipped_examples(self) -> list[str]:
        """"source: reason" of the samples this rank's loader skipped in the current epoch."""
        return self.loader.stats.examples
