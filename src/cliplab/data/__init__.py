"""Datasets, captions and loaders for CLIP training.

Sources (the registry `sources.SOURCES`, one entry per `dataset_type`): the built-in Fashion-MNIST
with generated captions (`fashion_mnist.py`), CSV/TSV manifests (`csv_dataset.py`), webdataset tar
shards (`webdataset_source.py`, written by `shards.py`, counted by `shard_counts.py`) and parquet
files (`parquet_dataset.py`, needs pyarrow, imported on first use).
`caption_corpus.caption_corpus(config)` gives the captions to train a tokenizer on.
`loader.build_train_loader` / `build_eval_loader` turn a `DataConfig` into batches of
`images float [B,3,H,W]`, `tokens long [B,T]`, `sample_ids long [B]`, `labels long [B]`,
`skipped int`, `skipped_examples list[str]` (see `batching.py`). `tokenizer` and `transforms`
are imported on first use, so importing this package stays light.
"""

from __future__ import annotations

import importlib

from cliplab.data.captions import CaptionVocabulary, TemplateCaptioner
from cliplab.data.config import DataConfig
from cliplab.data.csv_dataset import CsvDataset
from cliplab.data.fashion_mnist import (FASHION_MNIST_CLASSNAMES, FASHION_MNIST_TEMPLATES,
                                        FashionMnistDataset, fashion_mnist_caption_corpus)
from cliplab.data.fashion_mnist_files import FashionMnistNotFoundError, locate_fashion_mnist
from cliplab.data.idx import IdxFormatError, read_idx
from cliplab.data.loader import build_eval_loader, build_map_dataset, build_train_loader
from cliplab.data.sampler import ResumableDistributedBatchSampler, SequentialEvalBatchSampler
from cliplab.data.samples import BadSampleError, RawSample, TooManyBadSamplesError
from cliplab.data.shards import write_shards
from cliplab.data.skipping import SkipStats
from cliplab.data.webdataset_source import WebDatasetBatches

_LAZY = {"Tokenizer": "cliplab.data.tokenizer", "image_transform": "cliplab.data.transforms"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cliplab.data' has no attribute {name!r}")


__all__ = [
    "BadSampleError", "CaptionVocabulary", "CsvDataset", "DataConfig", "FASHION_MNIST_CLASSNAMES",
    "FASHION_MNIST_TEMPLATES", "FashionMnistDataset", "FashionMnistNotFoundError",
    "IdxFormatError", "RawSample", "ResumableDistributedBatchSampler",
    "SequentialEvalBatchSampler", "SkipStats", "TemplateCaptioner", "TooManyBadSamplesError",
    "WebDatasetBatches", "build_eval_loader", "build_map_dataset", "build_train_loader",
    "fashion_mnist_caption_corpus", "locate_fashion_mnist", "read_idx", "write_shards",
]
