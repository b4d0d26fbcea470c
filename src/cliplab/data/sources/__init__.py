"""The data-source registry: every `data.dataset_type` cliplab reads, one `DataSource` each (see
`spec` for what a source holds), in one table, `SOURCES`.

Everything that depends on the kind of data asks this table: `DataConfig`'s choices
(`DATASET_TYPES`) and checks, the loaders (`data.loader`: a map-style dataset sampled by
`data.sampler`, or a source's own stream of batches), the tokenizer's corpus
(`data.caption_corpus`), the evaluation during training and `cliplab eval` (class names for
zero-shot, where evaluation data comes from), the image statistics a fresh model normalises with
(`train.model_plan`) and `cliplab report`.

How to add a source: write one module in this package that reads its data (or imports a reader
from `cliplab.data`, inside the functions that use it), defines its captions for a tokenizer, and
ends with `SOURCE = DataSource(...)`; then add that `SOURCE` to `SOURCES` below. Its name becomes a
`--dataset-type` choice. A source needing keys of its own adds them to `DataConfig` (the other
sources ignore them).
"""

from __future__ import annotations

from cliplab.data.sources import csv, fashion_mnist, parquet, webdataset
from cliplab.data.sources.spec import (PHOTOGRAPHS, DataSource, ImageStatistics, IterableStyle, MapStyle,
                                       ZeroShotClasses)
from cliplab.registry_index import index_entries

SOURCES: tuple[DataSource, ...] = (
    fashion_mnist.SOURCE,
    csv.SOURCE,
    webdataset.SOURCE,
    parquet.SOURCE,
)

DATASET_TYPES: tuple[str, ...] = tuple(source.name for source in SOURCES)

_BY_NAME = index_entries(SOURCES, lambda source: source.name, "SOURCES")


def data_source(dataset_type: str) -> DataSource:
    """The source of `dataset_type`; ValueError "dataset_type must be one of (...)" otherwise."""
    source = _BY_NAME.get(dataset_type) if isinstance(dataset_type, str) else None
    if source is None:
        raise ValueError(f"dataset_type must be one of {DATASET_TYPES}, got {dataset_type!r}")
    return source


def sources_table() -> str:
    """The registered sources as the Markdown table docs/data.md shows (a test keeps them equal)."""
    lines = ["| dataset_type | read as | train_data / val_data | zero-shot classes | what it is |",
             "|---|---|---|---|---|"]
    for source in SOURCES:
        lines.append(f"| `{source.name}` | {source.style} | {source.location} | "
                     f"{'yes' if source.zero_shot() else 'no'} | {source.summary} |")
    return "\n".join(lines) + "\n"


__all__ = ["DATASET_TYPES", "PHOTOGRAPHS", "SOURCES", "DataSource", "ImageStatistics", "IterableStyle", "MapStyle",
           "ZeroShotClasses", "data_source", "sources_table"]
