"""`DataConfig`: where the data comes from and how it is loaded (open_clip's flag names).
`dataset_type` names a source of `cliplab.data.sources.SOURCES` (`DATASET_TYPES`)."""

from __future__ import annotations

from dataclasses import dataclass

from cliplab.config_checks import check_int_at_least, is_int, require, require_together
from cliplab.data.mixture_syntax import parse_factors, split_sources
from cliplab.data.sources import DATASET_TYPES, data_source, labelled_sources


@dataclass(kw_only=True)
class DataConfig:
    """What to load for training and evaluation.

    dataset_type: a training source of the registry (`cliplab.data.sources.DATASET_TYPES`; what
        train_data / val_data hold for each: its `location`, docs/data.md's table). train_data may
        join several locations of a source that mixes with `::` (a mixture, `data.mixture`).
    train_data_upsampling_factors: one factor per source of train_data (a list, or open_clip's
        `1::4`): how often each sample of a source is drawn relative to one of factor 1; None: 1
        each. What else a source needs for them: its `mixing` (webdataset: dataset_resampled).
    csv_caption_key / parquet_caption_key / wds_caption_key: where a sample's caption is: one caption,
        or several (a source's `caption_lists`: a JSON list in a CSV cell, a list column, a list in
        the webdataset `.json`), of which training draws one per sample and epoch and evaluation reads
        all. wds_caption_key: the `.json` key (None: the `.txt` file).
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
        csv_label_key; `class_subset`), and one source. Evaluation is not restricted.
    workers: data-loader worker processes per rank; None (the default): the source's
        `loader_workers` (`loader_workers()`), 0 for Fashion-MNIST, whose samples sit decoded in
        memory (a worker process there only takes a core from the model's threads), 2 for the
        sources that read and decode files.
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
    train_classes: tuple[int, ...] | None = None
    val_num_samples: int | None = None
    dataset_resampled: bool = False
    shuffle_buffer: int = 1000
    workers: int | None = None
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
        if self.train_data_upsampling_factors is not None:
            self._check_factors()
        for name in ("parquet_image_key", "parquet_caption_key", "parquet_label_key", "wds_caption_key"):
            require(getattr(self, name) != "", name, "", "must name a column (or be null for the default)",
                    quoted=False)
        if self.train_classes is not None:
            self._check_train_classes()
        require(len(self.csv_separator) == 1, "csv_separator", self.csv_separator, "must be one character",
                quoted=False)
        check_int_at_least("shuffle_buffer", self.shuffle_buffer, 1, quoted=False)
        if self.workers is not None:
            check_int_at_least("workers", self.workers, 0, quoted=False)
        require(0.0 <= self.max_skip_fraction < 1.0, "max_skip_fraction", self.max_skip_fraction,
                "must be in [0, 1)", quoted=False)
        check_int_at_least("skip_check_min_samples", self.skip_check_min_samples, 1, quoted=False)

    def loader_workers(self) -> int:
        """The data-loader worker processes per rank: `workers`, else the source's choice."""
        return self.workers if self.workers is not None else data_source(self.dataset_type).loader_workers

    def _check_factors(self) -> None:
        """The factors as a list of floats, one per `::` source of a source that mixes (its `mixing`)."""
        self.train_data_upsampling_factors = parse_factors(self.train_data_upsampling_factors)
        mixing = data_source(self.dataset_type).mixing
        require_together(mixing is not None and self.train_data is not None, "train_data_upsampling_factors",
                         "train_data_upsampling_factors weigh the '::'-joined sources of train_data, which "
                         f"dataset_type {self.dataset_type!r}"
                         f"{' does not read as a mixture' if mixing is None else ' without train_data does not have'}")
        count, sources = len(self.train_data_upsampling_factors), len(split_sources(self.train_data))
        require_together(count == sources, "train_data_upsampling_factors",
                         f"train_data_upsampling_factors holds {count} factor{'s' * (count != 1)} for the {sources} "
                         f"source{'s' * (sources != 1)} of train_data {self.train_data!r}: give one per "
                         "'::'-separated source")
        mixing.check(self)

    def _check_train_classes(self) -> None:
        self.train_classes = tuple(self.train_classes)
        require(bool(self.train_classes) and all(is_int(label) and label >= 0 for label in self.train_classes),
                "train_classes", self.train_classes, "must be class labels (integers >= 0)", quoted=False)
        labels = data_source(self.dataset_type).class_labels
        require_together(labels is not None and labels.present(self), "train_classes",
                         f"train_classes needs labels read with the data ({labelled_sources()}); "
                         f"dataset_type {self.dataset_type!r} as configured has none")
        require_together(self.train_data is None or len(split_sources(self.train_data)) == 1, "train_classes",
                         f"train_classes restricts one source; train_data {self.train_data!r} is a mixture")


__all__ = ["DATASET_TYPES", "DataConfig"]
