"""Building the training and evaluation loaders from a DataConfig, for any registered source
(`cliplab.data.sources`): a map-style source's dataset is sampled here, a streamed one brings its
own batches.

Build a new training loader every epoch (`epoch=` seeds its order and captions); to resume inside
an epoch pass the index of the first batch not yet trained on as `start_batch`. Both builders
return `(loader, num_batches)`: iterate the loader for batch dicts (format in `batching.py`); its
`stats` hold the epoch's skip counts once iteration is done (or at any point during it).
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cliplab.data.batching import MapBatchAssembler, Tokenize, Transform, identity_collate
from cliplab.data.config import DataConfig
from cliplab.data.fashion_mnist_files import Fetcher, urllib_fetch
from cliplab.data.mixture import MixtureDataset, WeightedPasses
from cliplab.data.mixture_syntax import split_sources
from cliplab.data.sampler import ResumableDistributedBatchSampler, SequentialEvalBatchSampler
from cliplab.data.samples import MapDataset
from cliplab.data.skipping import AccountedLoader
from cliplab.data.sources import data_source
from cliplab.errors import InvalidInputError


def build_map_dataset(config: DataConfig, *, train: bool,
                      fetch: Fetcher = urllib_fetch) -> MapDataset:
    """The map-style dataset of the train (train=True) or evaluation split; not for a streamed
    source (webdataset). Training data of several `::`-joined locations of a source that mixes is
    their `MixtureDataset`. Its source's reader is imported here (parquet's needs pyarrow)."""
    source = data_source(config.dataset_type)
    if source.map_style is None:
        raise ValueError(f"dataset_type {config.dataset_type!r} is not map-style")
    location = config.train_data if train else config.val_data
    if not source.built_in and location is None:
        raise InvalidInputError(f"{source.name} data: {'train_data' if train else 'val_data'} is not set")
    if train and source.mixing is not None and len(split_sources(location)) > 1:
        parts = [replace(config, train_data=part, train_data_upsampling_factors=None) for part in split_sources(location)]
        return MixtureDataset([source.map_style.open(part, True, fetch) for part in parts])
    return source.map_style.open(config, train, fetch)


def _resolve_loading(config: DataConfig, workers: int | None,
                     pin_memory: bool | None) -> tuple[int, bool]:
    workers = config.loader_workers() if workers is None else workers
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    return workers, torch.cuda.is_available() if pin_memory is None else pin_memory


def _data_loader(dataset, *, sampler, workers: int, pin_memory: bool) -> DataLoader:
    # One batch is one item: batch_size=None; workers load whole batches.
    return DataLoader(dataset, batch_size=None, sampler=sampler, num_workers=workers,
                      pin_memory=pin_memory, collate_fn=identity_collate,
                      prefetch_factor=2 if workers else None)


def build_train_loader(data_config: DataConfig, *, transform: Transform, tokenize: Tokenize,
                       batch_size: int, rank: int, world_size: int, seed: int, epoch: int,
                       start_batch: int = 0, workers: int | None = None,
                       pin_memory: bool | None = None,
                       dataset: MapDataset | None = None) -> tuple[AccountedLoader, int]:
    """This rank's training loader for `epoch`, starting at batch `start_batch`.

    An epoch is `train_num_samples` samples; for webdataset shards without it, the count recorded
    next to them (`webdataset_counts.py`), or a UserError saying how to give one.

    Returns (loader, num_batches): num_batches is the epoch's full batch count per rank, equal on
    every rank; the loader yields batches start_batch .. num_batches - 1, each of exactly
    `batch_size` samples. workers defaults to data_config.loader_workers(), pin_memory to CUDA being present.
    `dataset` reuses a map-style dataset built once with `build_map_dataset` (else built here).
    """
    source = data_source(data_config.dataset_type)
    if data_config.train_data is None and not source.built_in:
        raise ValueError(f"dataset_type {data_config.dataset_type!r}: train_data is not set")
    workers, pin_memory = _resolve_loading(data_config, workers, pin_memory)
    if source.iterable is not None:
        num_samples = source.iterable.sample_count(data_config, True)
        num_batches = math.ceil(num_samples / (batch_size * world_size))
        if not 0 <= start_batch <= num_batches:
            raise ValueError(f"start_batch must be in [0, {num_batches}], got {start_batch}")
        batches = source.iterable.batches(
            data_config, True, transform=transform, tokenize=tokenize, batch_size=batch_size, rank=rank,
            world_size=world_size, seed=seed, epoch=epoch, num_batches=num_batches, start_batch=start_batch)
        loader = _data_loader(batches, sampler=None, workers=workers, pin_memory=pin_memory)
    else:
        dataset = dataset if dataset is not None else build_map_dataset(data_config, train=True)
        sampler = ResumableDistributedBatchSampler(
            dataset_size=len(dataset), batch_size=batch_size, rank=rank, world_size=world_size,
            seed=seed, epoch=epoch, num_samples=data_config.train_num_samples,
            start_batch=start_batch, passes=mixture_passes(dataset, data_config))
        num_batches = sampler.num_batches
        assembler = MapBatchAssembler(dataset, transform=transform, tokenize=tokenize,
                                      seed=seed, epoch=epoch, refill=True)
        loader = _data_loader(assembler, sampler=sampler, workers=workers, pin_memory=pin_memory)
    accounted = AccountedLoader(loader, num_batches=num_batches - start_batch,
                                max_skip_fraction=data_config.max_skip_fraction,
                                min_samples=data_config.skip_check_min_samples,
                                what=f"training data ({_describe(data_config, train=True)})")
    return accounted, num_batches


def build_eval_loader(data_config: DataConfig, *, transform: Transform, tokenize: Tokenize,
                      batch_size: int, rank: int = 0, world_size: int = 1,
                      workers: int | None = None, pin_memory: bool | None = None,
                      dataset: MapDataset | None = None) -> tuple[AccountedLoader, int | None]:
    """The evaluation loader: Fashion-MNIST's test split, or val_data; every sample once, in order.

    Captions are those of epoch 0, and every caption of each sample rides along (`caption_lists`,
    `caption_tokens`: what retrieval reads). Bad samples are skipped without replacement, so batches
    may be short; num_batches is an upper bound (None for webdataset shards whose count is neither
    val_num_samples nor recorded next to them).
    """
    workers, pin_memory = _resolve_loading(data_config, workers, pin_memory)
    source = data_source(data_config.dataset_type)
    if source.iterable is not None:
        if data_config.val_data is None:
            raise ValueError(f"dataset_type {source.name!r}: val_data is not set")
        batches = source.iterable.batches(data_config, False, transform=transform, tokenize=tokenize,
                                          batch_size=batch_size, rank=rank, world_size=world_size)
        loader = _data_loader(batches, sampler=None, workers=workers, pin_memory=pin_memory)
        num_samples = source.iterable.sample_count(data_config, False)
        num_batches = (None if num_samples is None else
                       math.ceil(num_samples / (batch_size * world_size)))
    else:
        dataset = dataset if dataset is not None else build_map_dataset(data_config, train=False)
        sampler = SequentialEvalBatchSampler(dataset_size=len(dataset), batch_size=batch_size,
                                             rank=rank, world_size=world_size)
        num_batches = len(sampler)
        assembler = MapBatchAssembler(dataset, transform=transform, tokenize=tokenize, seed=0,
                                      epoch=0, refill=False, caption_lists=True)
        loader = _data_loader(assembler, sampler=sampler, workers=workers, pin_memory=pin_memory)
    accounted = AccountedLoader(loader, num_batches=num_batches,
                                max_skip_fraction=data_config.max_skip_fraction,
                                min_samples=data_config.skip_check_min_samples,
                                what=f"evaluation data ({_describe(data_config, train=False)})")
    return accounted, num_batches


def mixture_passes(dataset: MapDataset, config: DataConfig) -> WeightedPasses | None:
    """The weighted passes of a mixture of sources (`data.mixture`); None for one source without a factor."""
    factors = config.train_data_upsampling_factors
    if isinstance(dataset, MixtureDataset):
        return WeightedPasses(tuple(dataset.sizes), tuple(factors or [1.0] * len(dataset.sizes)))
    return None if factors is None else WeightedPasses((len(dataset),), tuple(factors))


def _describe(config: DataConfig, *, train: bool) -> str:
    location = config.train_data if train else config.val_data
    if data_source(config.dataset_type).built_in:
        return f"{config.dataset_type} {'train' if train else 'test'} split"
    return f"{config.dataset_type} {Path(location).name if location else ''}".strip()
