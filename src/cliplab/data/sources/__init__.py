"""The data-source registry: every kind of data cliplab reads, one `DataSource` each (see `spec` for
what a source holds), in one table, `SOURCES`: the training `data.dataset_type`s and the layouts
`cliplab benchmark` reads.

Everything that depends on the kind of data asks this table: `DataConfig`'s choices
(`DATASET_TYPES`: the sources training reads) and checks, the loaders (`data.loader`: a map-style
dataset sampled by `data.sampler`, or a source's own stream of batches), the tokenizer's corpus
(`data.caption_corpus`), the evaluation during training and `cliplab eval` (zero-shot on a
source's own classes, where evaluation data comes from), the image statistics a fresh model
normalises with (`train.model_plan`), `cliplab report`, and the benchmark datasets
(`data.benchmark.open_benchmark_dataset`: the first entry whose `benchmark.detect` accepts a
location, in table order).

How to add a source: write one module in this package that reads its data (or imports a reader
from `cliplab.data`, inside the functions that use it), defines its captions for a tokenizer, and
ends with `SOURCE = DataSource(...)`; then add that `SOURCE` to `SOURCES` below. Its name becomes a
`--dataset-type` choice. A source needing keys of its own adds them to `DataConfig` (the other
sources ignore them).

Last, `python scripts/write_docs_tables.py` rewrites the docs' generated table from this one (a
test keeps them equal), and tests/test_data_sources.py pins the registered sources in order: add the new name there.
"""

from __future__ import annotations

from cliplab.config_checks import require
from cliplab.data.sources import csv, fashion_mnist, image_folder, parquet, webdataset
from cliplab.data.sources.spec import (PHOTOGRAPHS, BenchmarkForm, ClassLabels, DataSource, ImageStatistics,
                                       IterableStyle, MapStyle, Mixing)
from cliplab.registry_index import index_entries

SOURCES: tuple[DataSource, ...] = (
    fashion_mnist.SOURCE,
    csv.SOURCE,
    webdataset.SOURCE,
    parquet.SOURCE,
    image_folder.SOURCE,
)

DATASET_TYPES: tuple[str, ...] = tuple(source.name for source in SOURCES if source.trains)

_BY_NAME = index_entries(SOURCES, lambda source: source.name, "SOURCES")


def data_source(dataset_type: str) -> DataSource:
    """The training source of `dataset_type`; ConfigError "dataset_type must be one of (...)" otherwise."""
    source = _BY_NAME.get(dataset_type) if isinstance(dataset_type, str) else None
    require(source is not None and source.trains, "dataset_type", dataset_type, f"must be one of {DATASET_TYPES}",
            quoted=False)
    return source


def labelled_sources() -> str:
    """The sources whose training samples carry class labels (--train-classes), in words."""
    return ", ".join(f"{source.name} {source.class_labels.needs}".strip() for source in SOURCES
                     if source.class_labels is not None)


def sources_table() -> str:
    """The registered sources as the Markdown table docs/data.md shows (a test keeps them equal)."""
    lines = ["| source | training reads it as | train_data / val_data | several captions per sample | "
             "mixtures (`a::b`) | zero-shot on its classes | class labels (--train-classes) | loader workers "
             "(default) | benchmark dataset | what it is |", "|---|---|---|---|---|---|---|---|---|---|"]
    for source in SOURCES:
        benchmark = source.benchmark.location if source.benchmark is not None else "-"
        labels = "no" if source.class_labels is None else source.class_labels.needs or "yes"
        mixing = "no" if source.mixing is None else f"yes{'; ' + source.mixing.needs if source.mixing.needs else ''}"
        lines.append(f"| `{source.name}` | {source.style} | {source.location if source.trains else '-'} | "
                     f"{source.caption_lists or 'no'} | {mixing} | {'yes' if source.zero_shot else 'no'} | {labels} | "
                     f"{source.loader_workers if source.trains else '-'} | {benchmark} | {source.summary} |")
    return "\n".join(lines) + "\n"


__all__ = ["DATASET_TYPES", "PHOTOGRAPHS", "SOURCES", "BenchmarkForm", "ClassLabels", "DataSource", "ImageStatistics",
           "IterableStyle", "MapStyle", "Mixing", "data_source", "labelled_sources", "sources_table"]
