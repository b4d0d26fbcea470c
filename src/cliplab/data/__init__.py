"""Datasets, captions and loaders for CLIP training.

Sources (the registry `sources.SOURCES`, one entry per `dataset_type`): the built-in Fashion-MNIST
with generated captions (`fashion_mnist.py`), CSV/TSV manifests (`csv_dataset.py`), webdataset tar
shards (`webdataset_source.py`, written by `webdataset_writer.py`, counted by `webdataset_counts.py`) and parquet
files (`parquet_dataset.py`, needs pyarrow, imported on first use).
`caption_corpus.caption_corpus(config)` gives the captions to train a tokenizer on.
`loader.build_train_loader` / `build_eval_loader` turn a `DataConfig` into batches of
`images float [B,3,H,W]`, `tokens long [B,T]`, `sample_ids long [B]`, `labels long [B]`,
`skipped int`, `skipped_examples list[str]` (see `batching.py`). Every name is imported
on first use (`cliplab.lazy_exports`), so importing this package (or `cliplab.data.config`) does
not import torch.
"""

from __future__ import annotations

from cliplab.lazy_exports import exported_names, lazy_exports

# defining module -> its public names
_EXPORTS = {
    "cliplab.data.captions": ("CaptionVocabulary", "TemplateCaptioner"),
    "cliplab.data.config": ("DataConfig",),
    "cliplab.data.csv_dataset": ("CsvDataset",),
    "cliplab.data.fashion_mnist": ("FASHION_MNIST_CLASSNAMES", "FASHION_MNIST_TEMPLATES", "FashionMnistDataset",
                                   "fashion_mnist_caption_corpus"),
    "cliplab.data.fashion_mnist_files": ("FashionMnistNotFoundError", "locate_fashion_mnist"),
    "cliplab.data.idx": ("IdxFormatError", "read_idx"),
    "cliplab.data.loader": ("build_eval_loader", "build_map_dataset", "build_train_loader"),
    "cliplab.data.sampler": ("ResumableDistributedBatchSampler", "SequentialEvalBatchSampler"),
    "cliplab.data.samples": ("BadSampleError", "RawSample", "TooManyBadSamplesError"),
    "cliplab.data.webdataset_writer": ("write_shards",),
    "cliplab.data.skipping": ("SkipStats",),
    "cliplab.data.tokenizer": ("Tokenizer",),
    "cliplab.data.transforms": ("image_transform",),
    "cliplab.data.webdataset_source": ("WebDatasetBatches",),
}

__all__ = exported_names(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
