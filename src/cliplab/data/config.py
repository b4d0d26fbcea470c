"""`DataConfig`: where the data comes from and how it is loaded (open_clip's flag names).
`dataset_type` names a source of `cliplab.data.sources.SOURCES` (`DATASET_TYPES`)."""

from __future__ import annotations

from dataclasses import dataclass

from cliplab.config_checks import check_int_at_least, require, require_together
from cliplab.data.sources import DATASET_TYPES, data_source


@dataclass(kw_only=True)
class DataConfig:
    """What to load for training and evaluation.

    dataset_type: a registered source (`cliplab.data.sources`, docs/data.md): "fashion-mnist"
        (built in; train_data / val_data optionally name the directory holding its idx files),
        "csv" (train_data / val_data are manifests), "webdataset" (brace patterns of tar shards)
        or "parquet" (a parquet file, a directory of them, or a glob).
    csv_label_key: optional integer label column of a manifest.
    parquet_image_key / parquet_caption_key: the image column (encoded bytes, or {"bytes", "path"}
        structs) and the caption column of parquet data; None takes the first that exists of
        `image`, `jpg`, `png` / `caption`, `text`, `txt`. parquet_label_key: optional integer
        label column.
    train_num_samples: samples per epoch. For map-style datasets it defaults to the dataset size
        (fewer takes a seeded subset, more repeats it); for webdataset, to the count recorded next to
        the shards (`webdataset_counts.py`), an error at loader start when there is none.
    val_num_samples: webdataset only, gives the evaluation loader its batch count (default: the
        count recorded next to the shards, where there is one).
    max_skip_fraction: the run stops once more than this share of the samples drawn in an epoch were
        bad, checked after skip_check_min_samples draws.
    caption_seed: seeds the generated Fashion-MNIST captions (with epoch and sample index).
    fashion_mnist_download: whether to download Fashion-MNIST into the cache when no local copy
        exists; cache_dir overrides $CLIPLAB_CACHE/fashion-mnist.
    """

    dataset_type: str = "fashion-mnist"
    train_data: str | None = None
    val_data: str | None = None
    csv_img_key: str = "filepath"
    csv_caption_key: str = "title"
    csv_label_key: str | None = None
    csv_separator: str = "\t"
    parquet_image_key: str | None = None
    parquet_caption_key: str | None = None
    parquet_label_key: str | None = None
    train_num_samples: int | None = None
    val_num_samples: int | None = None
    dataset_resampled: bool = False
    shuffle_buffer: int = 1000
    workers: int = 2
    max_skip_fraction: float = 0.05
    skip_check_min_samples: int = 200
    caption_seed: int = 0
    fashion_mnist_download: bool = True
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        # Keys of a section `cliplab.train.config.io` reports whole: "config section 'data': ..."
        require_together(data_source(self.dataset_type).built_in or bool(self.train_data or self.val_data),
                         "train_data", f"dataset_type {self.dataset_type!r} needs train_data and/or val_data")
        for name in ("train_num_samples", "val_num_samples"):
            value = getattr(self, name)
            require(value is None or value >= 1, name, value, "must be >= 1 when given", quoted=False)
        for name in ("parquet_image_key", "parquet_caption_key", "parquet_label_key"):
            require(getattr(self, name) != "", name, "", "must name a column (or be null for the default)",
                    quoted=False)
        require(len(self.csv_separator) == 1, "csv_separator", self.csv_separator, "must be one character",
                quoted=False)
        check_int_at_least("shuffle_buffer", self.shuffle_buffer, 1, quoted=False)
        check_int_at_least("workers", self.workers, 0, quoted=False)
        require(0.0 <= self.max_skip_fraction < 1.0, "max_skip_fraction", self.max_skip_fraction,
                "must be in [0, 1)", quoted=False)
        check_int_at_least("skip_check_min_samples", self.skip_check_min_samples, 1, quoted=False)


__all__ = ["DATASET_TYPES", "DataConfig"]
