"""Benchmark datasets: what `cliplab benchmark` evaluates on, one reader module per layout.

| layout           | module               | location                                                    | source         |
|------------------|----------------------|-------------------------------------------------------------|----------------|
| `builtin`        | `fashion_mnist_set`  | the name `fashion-mnist`                                    | `fashion-mnist`|
| `csv`            | `csv_table`          | a `.csv` / `.tsv` file, or a directory of `{split}.csv`     | `csv`          |
| `clip_benchmark` | `wds_layout`         | a directory of `{split}/*.tar` shards (CLIP_benchmark's)    | `webdataset`   |
| `parquet`        | `parquet_table`      | a `.parquet` file, or a directory of `{split}.parquet`      | `parquet`      |
| `image_folder`   | `image_folder`       | a directory of class folders (or of `{split}/` of them)     | `image-folder` |

Each layout is the benchmark form of a source of the registry `cliplab.data.sources.SOURCES`
(`DataSource.benchmark`), and `open_benchmark_dataset(location, ...)` opens a location with the
first source (in table order, the rows above) whose `detect` accepts it. Every reader returns a `dataset.BenchmarkDataset` (splits of images
with labels and/or captions, its own class names and templates); `class_names` adds the built-in
class names and templates by dataset name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cliplab.data.benchmark.dataset import BenchmarkDataset, BenchmarkSplit, NamedList
from cliplab.data.benchmark.table_keys import TableKeys
from cliplab.data.sources import SOURCES
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


# the names of the built-in benchmark datasets (the built-in sources')
BUILTIN_NAMES = tuple(source.name for source in SOURCES if source.built_in and source.benchmark is not None)


def open_benchmark_dataset(location: str, options: DatasetOptions = DatasetOptions()) -> BenchmarkDataset:
    """The dataset at `location` (a built-in name or a path): the first source of
    `cliplab.data.sources.SOURCES` whose benchmark form detects it (module docstring)."""
    for source in SOURCES:
        if source.benchmark is not None and source.benchmark.detect(location):
            return source.benchmark.open(location, options)
    if not Path(location).exists():
        raise MissingInputError(f"dataset {location}: no such file or directory, and not a built-in dataset "
                                f"({', '.join(BUILTIN_NAMES)})")
    layouts = [source.benchmark.location for source in SOURCES if source.benchmark is not None and not source.built_in]
    raise InvalidInputError(f"dataset {location}: not a dataset layout cliplab reads: {', '.join(layouts[:-1])}, or "
                            f"{layouts[-1]}")


__all__ = ["BUILTIN_NAMES", "BenchmarkDataset", "BenchmarkSplit", "DatasetOptions", "NamedList", "TableKeys",
           "open_benchmark_dataset"]
