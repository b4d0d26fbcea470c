"""Datasets, captions and loaders for CLIP training.

Sources: the built-in Fashion-MNIST with generated captions (`fashion_mnist.py`), CSV/TSV manifests
(`csv_dataset.py`), webdataset tar shards (`webdataset_source.py`, written by `shards.py`, counted by
`shard_counts.py`) and parquet files (`parquet_dataset.py`, needs pyarrow, imported on first use).
`caption_corpus.caption_corpus(config)` gives the captions to train a tokenizer on.
`loader.build_train_loader` / `build_eval_loader` turn a `DataConfig` into batches of
`images float [B,3,H,W]`, `tokens long [B,T]`, `sample_ids long [B]`, `labels long [B]`,
`skipped int`, `skipped_examples list[str]` (see `batching.py`). Every name is imported
on first use (`cliplab.lazy_exports`), so importing this package (or `cliplab.data.config`) does
not import torch.
"""

from __future__ import annotations

from cliplab.lazy_exports import lazy_exports

# public name -> module that defines it
_EXPORTS = {
    "BadSampleError": "cliplab.data.samples",
    "CaptionVocabulary": "cliplab.data.captions",
    "CsvDataset": "cliplab.data.csv_dataset",
    "DataConfig": "cliplab.data.config",
    "FASHION_MNIST_CLASSNAMES": "cliplab.data.fashion_mnist",
    "FASHION_MNIST_TEMPLATES": "cliplab.data.fashion_mnist",
    "FashionMnistDataset": "cliplab.data.fashion_mnist",
    "FashionMnistNotFoundError": "cliplab.data.fashion_mnist_files",
    "IdxFormatError": "cliplab.data.idx",
    "RawSample": "cliplab.data.samples",
    "ResumableDistributedBatchSampler": "cliplab.data.sampler",
    "SequentialEvalBatchSampler": "cliplab.data.sampler",
    "SkipStats": "cliplab.data.skipping",
    "TemplateCaptioner": "cliplab.data.captions",
    "Tokenizer": "cliplab.data.tokenizer",
    "TooManyBadSamplesError": "cliplab.data.samples",
    "WebDatasetBatches": "cliplab.data.webdataset_source",
    "build_eval_loader": "cliplab.data.loader",
    "build_map_dataset": "cliplab.data.loader",
    "build_train_loader": "cliplab.data.loader",
    "fashion_mnist_caption_corpus": "cliplab.data.fashion_mnist",
    "image_transform": "cliplab.data.transforms",
    "locate_fashion_mnist": "cliplab.data.fashion_mnist_files",
    "read_idx": "cliplab.data.idx",
    "write_shards": "cliplab.data.shards",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
