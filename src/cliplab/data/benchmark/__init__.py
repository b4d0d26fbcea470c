"""Benchmark datasets: what `cliplab benchmark` evaluates on, one reader module per layout.

| layout           | module               | location                                                    |
|------------------|----------------------|-------------------------------------------------------------|
| `builtin`        | `fashion_mnist_set`  | the name `fashion-mnist`                                    |
| `clip_benchmark` | `wds_layout`         | a directory of `{split}/*.tar` shards (CLIP_benchmark's)    |
| `csv`            | `csv_table`          | a `.csv` / `.tsv` file, or a directory of `{split}.csv`     |
| `parquet`        | `parquet_table`      | a `.parquet` file, or a directory of `{split}.parquet`      |
| `image_folder`   | `image_folder`       | a directory of class folders (or of `{split}/` of them)     |

`open_benchmark_dataset(location, ...)` tries the rows in this order and opens the first whose
`detect` accepts the location. Every reader returns a `dataset.BenchmarkDataset` (splits of images
with labels and/or captions, its own class names and templates); `class_names` adds the built-in
class names and templates by dataset name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cliplab.data.benchmark import csv_table, fashion_mnist_set, image_folder, parquet_table, wds_layout
from cliplab.data.benchmark.dataset import BenchmarkDataset, BenchmarkSplit, NamedList
from cliplab.data.benchmark.table_keys import TableKeys
from cliplab.errors import InvalidInputError, MissingInputError


@dataclass(frozen=True, kw_only=True)
class DatasetOptions:
    """How to read a benchmark dataset: table columns; name: what result files call it (None: the
    reader's name); data_dir / download: where the built-in set's files are, and whether it may
    download them."""

    keys: TableKeys = TableKeys()
    name: str | None = None
    data_dir: str | None = None
    download: bool = True


@dataclass(frozen=True)
class Layout:
    name: str
    detect: Callable[[Path], bool]
    open: Callable[[Path, DatasetOptions], BenchmarkDataset]


LAYOUTS = (
    Layout(wds_layout.LAYOUT, wds_layout.detect,
           lambda path, options: wds_layout.open_dataset(path, name=options.name)),
    Layout(csv_table.LAYOUT, csv_table.detect,
           lambda path, options: csv_table.open_dataset(path, keys=options.keys, name=options.name)),
    Layout(parquet_table.LAYOUT, parquet_table.detect,
           lambda path, options: parquet_table.open_dataset(path, keys=options.keys, name=options.name)),
    Layout(image_folder.LAYOUT, image_folder.detect,
           lambda path, options: image_folder.open_dataset(path, name=options.name)),
)
BUILTIN_NAMES = (fashion_mnist_set.NAME,)


def open_benchmark_dataset(location: str, options: DatasetOptions = DatasetOptions()) -> BenchmarkDataset:
    """The dataset at `location` (a built-in name or a path; layouts: module docstring)."""
    if location == fashion_mnist_set.NAME:
        return fashion_mnist_set.open_dataset(data_dir=options.data_dir, download=options.download)
    path = Path(location)
    if not path.exists():
        raise MissingInputError(f"dataset {location}: no such file or directory, and not a built-in dataset "
                                f"({', '.join(BUILTIN_NAMES)})")
    for layout in LAYOUTS:
        if layout.detect(path):
            return layout.open(path, options)
    raise InvalidInputError(
        f"dataset {location}: not a dataset layout cliplab reads: a directory of {{split}}/*.tar shards "
        "(CLIP_benchmark's), a .csv/.tsv/.parquet file (or a directory of {split}.csv ...), or a directory of "
        "class folders of images")


__all__ = ["BUILTIN_NAMES", "BenchmarkDataset", "BenchmarkSplit", "DatasetOptions", "LAYOUTS", "NamedList",
           "TableKeys", "open_benchmark_dataset"]
