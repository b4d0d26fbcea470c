"""`DataConfig`: where the data comes from and how it is loaded (open_clip's flag names).
`dataset_type` names a source of `cliplab.data.sources.SOURCES` (`DATASET_TYPES`)."""

from __future__ import annotations

from dataclasses import dataclass

from cliplab.config_checks import check_int_at_least, is_int, require, require_together
from cliplab.data.sources import DATASET_TYPES, data_source, labelled_sources


@dataclass(kw_only=True)
class DataConfig:
    """What to load for training and evaluation.

    dataset_type: a training source of the registry (`cliplab.data.sources.DATASET_TYPES`; what
        train_data / val_data hold for each: its `location`, docs/data.md's table).
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
    train_classes: train only on the samples of these class labels (None: all); needs labels read
        with the data (a source's `class_labels`: Fashion-MNIST, or a csv manifest with
        csv_label_key; `class_subset`). Evaluation is not restricted.
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
    train_classes: tuple[int, ...] | None = None
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
        if self.train_classes is not None:
            self._check_train_classes()
        require(len(self.csv_separator) == 1, "csv_separator", self.csv_separator, "must be one character",
                quoted=False)
        check_int_at_least("shuffle_buffer", self.shuffle_buffer, 1, quoted=False)
        check_int_at_least("workers", self.workers, 0, quoted=False)
        require(0.0 <= self.max_skip_fraction < 1.0, "max_skip_fraction", self.max_skip_fraction,
                "must be in [0, 1)", quoted=False)
        check_int_at_least("skip_check_min_samples", self.skip_check_min_samples, 1, quoted=False)

    def _check_train_classes(self) -> None:
        self.train_classes = tuple(self.train_classes)
        require(bool(self.train_classes) and all(is_int(label) and label >= 0 for label in self.train_classes),
                "train_classes", self.train_classes, "must be class labels (integers >= 0)", quoted=False)
        labels = data_source(self.dataset_type).class_labels
        require_together(labels is not None and labels.present(self), "train_classes",
                         f"train_classes needs labels read with the data ({labelled_sources()}); "
                         f"dataset_type {self.dataset_type!r} as configured has none")


__all__ = ["DATASET_TYPES", "DataConfig"]
