"""`DataConfig`: where the data comes from and how it is loaded (open_clip's flag names)."""

from __future__ import annotations

from dataclasses import dataclass

from cliplab.data.mixture_syntax import parse_factors, split_sources

DATASET_TYPES = ("fashion-mnist", "csv", "webdataset", "parquet")


@dataclass(kw_only=True)
class DataConfig:
    """What to load for training and evaluation.

    dataset_type: "fashion-mnist" (built in; train_data / val_data optionally name the directory
        holding its idx files), "csv" (train_data / val_data are manifests), "webdataset" (brace
        patterns of tar shards) or "parquet" (a parquet file, a directory of them, or a glob).
        train_data may name several sources of that type joined by `::` (a mixture, `data.mixture`).
    train_data_upsampling_factors: one factor per source of train_data (a list, or open_clip's
        `1::4`): how often each sample of a source is drawn relative to one of factor 1; None: 1
        each. Webdataset shards need dataset_resampled for them (open_clip's rule).
    csv_caption_key / parquet_caption_key / wds_caption_key: where a sample's caption is: one caption,
        or several (a JSON list in a CSV cell, a list column, a list in the webdataset `.json`;
        `caption_lists`), of which training draws one per sample and epoch and evaluation reads all.
        wds_caption_key: the `.json` key (None: the `.txt` file).
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
    caption_seed: seeds the caption a sample trains on in an epoch (with the epoch and the sample): the
        generated Fashion-MNIST captions, and the draw among several captions of a field.
    fashion_mnist_download: whether to download Fashion-MNIST into the cache when no local copy
        exists; cache_dir overrides $CLIPLAB_CACHE/fashion-mnist.
    """

    dataset_type: str = "fashion-mnist"
    train_data: str | None = None
    val_data: str | None = None
    train_data_upsampling_factors: list[float] | str | None = None
    csv_img_key: str = "filepath"
    csv_caption_key: str = "title"
    csv_label_key: str | None = None
    csv_separator: str = "\t"
    parquet_image_key: str | None = None
    parquet_caption_key: str | None = None
    parquet_label_key: str | None = None
    wds_caption_key: str | None = None
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
        if self.dataset_type != "fashion-mnist" and not (self.train_data or self.val_data):
            raise ValueError(f"dataset_type {self.dataset_type!r} needs train_data and/or val_data")
        for name in ("train_num_samples", "val_num_samples"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 when given, got {value}")
        self._check_mixture()
        for name in ("parquet_image_key", "parquet_caption_key", "parquet_label_key", "wds_caption_key"):
            if getattr(self, name) == "":
                raise ValueError(f"{name} must name a column (or be null for the default), got ''")
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

    def _check_mixture(self) -> None:
        """Normalise the factors to a list of floats and check them against the sources."""
        if self.train_data_upsampling_factors is None:
            return
        self.train_data_upsampling_factors = parse_factors(self.train_data_upsampling_factors)
        count = len(self.train_data_upsampling_factors)
        if self.dataset_type == "fashion-mnist" or self.train_data is None:
            raise ValueError(f"train_data_upsampling_factors weigh the '::'-joined sources of train_data, which "
                             f"dataset_type {self.dataset_type!r} without train_data does not have")
        sources = len(split_sources(self.train_data))
        if count != sources:
            raise ValueError(f"train_data_upsampling_factors holds {count} factor{'s' * (count != 1)} for the "
                             f"{sources} source{'s' * (sources != 1)} of train_data {self.train_data!r}: give one per "
                             "'::'-separated source")
        if self.dataset_type == "webdataset" and not self.dataset_resampled:
            raise ValueError("train_data_upsampling_factors on webdataset shards weigh the shards' draws with "
                             "replacement: add dataset_resampled (--dataset-resampled), as open_clip requires")
