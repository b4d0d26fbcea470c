"""What a data source is: one `DataSource` record holding everything cliplab does with one kind of
data: as a training `data.dataset_type` (how its splits are read, its captions for a tokenizer, its
sample count, the image statistics that fit it) and as a benchmark dataset (`cliplab benchmark`,
--zeroshot-dataset: its layout's reader, its class names).

The contracts a source's parts keep:

- name: the `dataset_type` value (`--dataset-type`); title: its name in sentences. location: what `train_data` / `val_data` hold,
  in words. built_in: the data comes with cliplab (the location is optional: a directory holding
  its files), its splits are "train" and "test", and evaluation has a split without `val_data`.
- at most one training form (none: a layout `cliplab benchmark` reads but training does not):
  - `map_style` (`MapStyle`): `open(config, train, fetch) -> MapDataset` (`data.samples`): the
    training (train=True) or evaluation split, read once at start-up; the loaders sample it, so its
    sample count is `len(dataset)`;
  - `iterable` (`IterableStyle`): `batches(config, train, **loading) -> IterableDataset` of whole
    batches (`data.batching`'s format) and `sample_count(config, train) -> int | None` (the epoch's
    samples; for train a UserError saying how to give one when it cannot be known).
- check(location): a UserError when `location` (a `train_data` / `val_data` value) cannot be this
  source's data, found without reading it (evaluation checks its split at start-up, `cliplab eval`
  its --retrieval-data); None: nothing to check before reading.
- captions(config) -> Iterable[str] (training sources): the training data's captions, in file
  order, to train a tokenizer on (`caption_corpus` takes the first `MAX_CORPUS_CAPTIONS`);
  UserError naming the config key or file that is wrong.
- zero_shot(config) -> BenchmarkDataset, or None for data without classes: the benchmark dataset
  whose test split zero-shot runs on during training by default (Fashion-MNIST's; others need
  --zeroshot-dataset, and `cliplab eval` defaults to retrieval for them).
- benchmark (`BenchmarkForm` or None): how `cliplab benchmark` / --zeroshot-dataset reads a
  location of this source (`cliplab.data.benchmark.open_benchmark_dataset` asks the entries in
  table order): `detect(location: str)` (a built-in source: its name), `open(location, options)
  -> BenchmarkDataset` (options: `data.benchmark.DatasetOptions`), `location` (what it reads, in
  words, for the error naming what a location is not).
- mixing (`Mixing` or None): a training source whose train_data may join several locations with
  `::` into one mixture (open_clip's `a::b`, weighted by train_data_upsampling_factors; `data.mixture`).
  A map-style source's parts are opened one by one (`map_style.open` of the config with one part as
  train_data) and read as one `MixtureDataset` in weighted passes; an iterable source mixes them in
  its own `batches`. `check(config)`: a ConfigError when the config's mixture cannot be read;
  `needs`: what a config sets for weights, in words ("" when nothing). None: train_data is one
  location, and upsampling factors are refused.
- caption_lists: where a sample's caption field may hold several captions, in words (docs/data.md's
  table); the source's reader draws one per (sample, epoch) for training and keeps all of them for
  evaluation (`data.caption_lists`). None: one caption per sample.
- class_labels (`ClassLabels` or None): a training source whose map-style dataset knows each sample's
  class label without reading the sample (its `labels`, one per sample), which --train-classes
  (`data.class_subset`) needs: `present(config)` says whether this config's data has them, `needs`
  what a config sets for them, in words ("" when always); None: never.
- loader_workers: the data-loader worker processes per rank when `data.workers` is unset: 2 for a
  source that reads and decodes files in its samples; 0 for one whose samples sit decoded in memory
  (Fashion-MNIST), where a worker process would only take a core from the model's threads.
- statistics: the per-channel mean and std its images are normalised with when the model config's
  statistics are another source's (`train.model_plan`): Fashion-MNIST's grayscale ones, or OpenAI
  CLIP's for photographs.

A source's module imports its reader (torch, PIL, pyarrow ...) inside the functions that use it,
so that the table (read by `DataConfig` and the CLI's --help) imports without them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cliplab.data.preprocess_config import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

if TYPE_CHECKING:
    from cliplab.data.config import DataConfig
    from cliplab.data.samples import MapDataset


@dataclass(frozen=True)
class ImageStatistics:
    """Per-channel (R, G, B) mean and std in [0, 1]; `name` says whose they are ("OpenAI CLIP's")."""

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


# The statistics of the photographs CLIP-family models are usually trained on.
PHOTOGRAPHS = ImageStatistics("OpenAI CLIP's", OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)


@dataclass(frozen=True, kw_only=True)
class BenchmarkForm:
    """A source read as a benchmark dataset (see the module docstring)."""

    location: str
    detect: Callable[[str], bool]
    open: Callable[[str, Any], Any]


def layout_form(module: str, location: str, *, takes_keys: bool = False) -> BenchmarkForm:
    """The `BenchmarkForm` of a path layout whose reader is `cliplab.data.benchmark.<module>`
    (`detect(path)`, `open_dataset(path, name=, keys=)`), imported when the form is first used;
    takes_keys: the reader reads table columns (`options.keys`)."""
    def reader() -> Any:
        return importlib.import_module(f"cliplab.data.benchmark.{module}")

    def open_layout(where: str, options: Any) -> Any:
        keys = {"keys": options.keys} if takes_keys else {}
        return reader().open_dataset(Path(where), name=options.name, **keys)

    return BenchmarkForm(location=location, open=open_layout,
                         detect=lambda where: Path(where).exists() and reader().detect(Path(where)))


@dataclass(frozen=True, kw_only=True)
class MapStyle:
    """A source read as a map-style dataset (see the module docstring)."""

    open: Callable[..., MapDataset]


@dataclass(frozen=True, kw_only=True)
class IterableStyle:
    """A source streamed as batches (see the module docstring)."""

    batches: Callable[..., Any]
    sample_count: Callable[[DataConfig, bool], int | None]


def _no_check(config: DataConfig) -> None:
    return None


@dataclass(frozen=True, kw_only=True)
class Mixing:
    """How a training source reads a `::`-joined train_data as one mixture (see the module docstring)."""

    check: Callable[[DataConfig], None] = _no_check
    needs: str = ""


@dataclass(frozen=True, kw_only=True)
class ClassLabels:
    """The class labels a source's training samples carry (see the module docstring)."""

    present: Callable[[DataConfig], bool]
    needs: str = ""


@dataclass(frozen=True, kw_only=True)
class DataSource:
    """What cliplab does with one `dataset_type` (each part's contract: the module docstring); the
    `summary` is its row's text in docs/data.md."""

    name: str
    title: str
    summary: str
    location: str
    captions: Callable[[DataConfig], Iterable[str]] | None = None
    statistics: ImageStatistics = PHOTOGRAPHS
    built_in: bool = False
    zero_shot: Callable[[DataConfig], Any] | None = None
    check: Callable[[str], None] | None = None
    map_style: MapStyle | None = None
    iterable: IterableStyle | None = None
    benchmark: BenchmarkForm | None = None
    mixing: Mixing | None = None
    caption_lists: str | None = None
    class_labels: ClassLabels | None = None
    loader_workers: int = 2

    def __post_init__(self) -> None:
        if self.map_style is not None and self.iterable is not None:
            raise ValueError(f"DataSource {self.name!r}: give at most one of map_style and iterable")
        if self.trains != (self.captions is not None):
            raise ValueError(f"DataSource {self.name!r}: a training source has captions, another none")
        if self.mixing is not None and not self.trains:
            raise ValueError(f"DataSource {self.name!r}: only a training source reads a mixture")
        if self.class_labels is not None and self.map_style is None:
            raise ValueError(f"DataSource {self.name!r}: class labels are read from a map-style dataset")

    @property
    def trains(self) -> bool:
        """Whether training reads it (its name is a `dataset_type`)."""
        return self.map_style is not None or self.iterable is not None

    @property
    def style(self) -> str:
        return "map" if self.map_style is not None else "iterable" if self.iterable is not None else "-"
