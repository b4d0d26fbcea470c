"""`DataConfig`: where the data comes from and how it is loaded (open_clip's flag names)."""

from __future__ import annotations

from dataclasses import dataclass

DATASET_TYPES = ("fashion-mnist", "csv", "webdataset", "parquet")


@dataclass(kw_only=True)
class DataConfig:
    """What to load for training and evaluation.

    dataset_type: "fashion-mnist" (built in; train_data / val_data optionally name the directory
        holding its idx files), "csv" (train_data / val_data are manifests), "webdataset" (brace
        patterns of tar shards) or "parquet" (a parquet file, a directory of them, or a glob).
    csv_label_key: optional integer label column of a manifest.
    parquet_image_key / parquet_caption_key: the image column (encoded bytes, or {"bytes", "path"}
        structs) and the caption column of parquet data; None takes the first that exists of
        `image`, `jpg`, `png` / `caption`, `text`, `txt`. parquet_label_key: optional integer
        label column.
    train_num_samples: samples per epoch. For map-style datasets it defaults to the dataset size
        (fewer takes a seeded subset, more repeats it); for webdataset, to the count recorded next to
        the shards (`shard_counts.py`), an error at loader start when there is none.
    val_num_samples: webdataset only, gives the evaluation loader its batch count (default: the
        count recorded next to the shards, where there is one).
    max_skip_fraction: the run stops once more than this share of the samples drawn in an epoch were
        bad, checked after skip_check_min_samples draws.
    train_classes: train only on the samples of these class labels (None: all); needs labels read
        with the data: Fashion-MNIST, or a csv manifest with csv_label_key (`class_subset`).
        Evaluation is not restricted.
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
        if self.dataset_type not in DATASET_TYPES:
            raise ValueError(f"dataset_type must be one of {DATASET_TYPES}, got "
                             f"{self.dataset_type!r}")
        if self.dataset_type != "fashion-mnist" and not (self.train_data or self.val_data):
            raise ValueError(f"dataset_type {self.dataset_type!r} needs train_data and/or val_data")
        for name in ("train_num_samples", "val_num_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 when given, got {value}")
        for name in ("parquet_image_key", "parquet_caption_key", "parquet_label_key"):
            if getattr(self, name) == "":
                raise ValueError(f"{name} must name a column (or be null for the default), got ''")
        if self.train_classes is not None:
            self.train_classes = tuple(self.train_classes)
            if not self.train_classes or not all(isinstance(label, int) and not isinstance(label, bool) and label >= 0
                                                 for label in self.train_classes):
                raise ValueError(f"train_classes must be class labels (integers >= 0), got {self.train_classes!r}")
            if not (self.dataset_type == "fashion-mnist" or (self.dataset_type == "csv" and self.csv_label_key)):
                raise ValueError(f"train_classes needs labels read with the data: fashion-mnist, or csv with "
                                 f"csv_label_key; dataset_type {self.dataset_type!r} "
                                 f"{'without csv_label_key ' if self.dataset_type == 'csv' else ''}has none")
        if len(self.csv_separator) != 1:
            raise ValueError(f"csv_separator must be one character, got {self.csv_separator!r}")
        if self.shuffle_buffer < 1:
            raise ValueError(f"shuffle_buffer must be >= 1, got {self.shuffle_buffer}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")
        if not 0.0 <= self.max_skip_fraction < 1.0:
            raise ValueError(f"max_skip_fraction must be in [0, 1), got {self.max_skip_fraction}")
        if self.skip_check_min_samples < 1:
            raise ValueError(f"skip_check_min_samples must be >= 1, got "
                             f"{self.skip_check_min_samples}")
