"""`DataConfig`: where the data comes from and how it is loaded (open_clip's flag names)."""

from __future__ import annotations

from dataclasses import dataclass

DATASET_TYPES = ("fashion-mnist", "csv", "webdataset")


@dataclass(kw_only=True)
class DataConfig:
    """What to load for training and evaluation.

    dataset_type: "fashion-mnist" (built in; train_data / val_data optionally name the directory
        holding its idx files), "csv" (train_data / val_data are manifests) or "webdataset"
        (brace patterns of tar shards).
    train_num_samples: samples per epoch. Required for webdataset training; for map-style datasets
        it defaults to the dataset size (fewer takes a seeded subset, more repeats it).
    val_num_samples: webdataset only, gives the evaluation loader its batch count.
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
        if self.dataset_type not in DATASET_TYPES:
            raise ValueError(f"dataset_type must be one of {DATASET_TYPES}, got "
                             f"{self.dataset_type!r}")
        if self.dataset_type in ("csv", "webdataset") and not (self.train_data or self.val_data):
            raise ValueError(f"dataset_type {self.dataset_type!r} needs train_data and/or val_data")
        if (self.dataset_type == "webdataset" and self.train_data
                and self.train_num_samples is None):
            raise ValueError("webdataset training needs train_num_samples (samples per epoch): "
                             "shards do not say how many samples they hold")
        for name in ("train_num_samples", "val_num_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 when given, got {value}")
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
