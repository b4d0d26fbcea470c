"""What the table layouts (CSV/TSV, parquet) share: the column choices and the split files."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

from cliplab.data.benchmark.class_names import CLASSNAMES_FILE, TEMPLATES_FILE, own_list
from cliplab.data.benchmark.dataset import BenchmarkDataset, BenchmarkSplit
from cliplab.errors import InvalidInputError

SPLIT_NAMES = ("train", "val", "validation", "test")
DEFAULT_SPLIT = "test"


@dataclass(frozen=True, kw_only=True)
class TableKeys:
    """Columns of a table dataset (None: the layout's default) and a CSV separator (None: by suffix)."""

    image_key: str | None = None
    label_key: str | None = None
    caption_key: str | None = None
    separator: str | None = None

    def __post_init__(self) -> None:
        if self.separator is not None and len(self.separator) != 1:
            raise InvalidInputError(f"--csv-separator must be one character, got {self.separator!r}")
        for flag, value in (("--image-key", self.image_key), ("--label-key", self.label_key),
                            ("--caption-key", self.caption_key)):
            if value == "":
                raise InvalidInputError(f"{flag} must name a column, got ''")


def pick_column(columns: Sequence[str], given: str | None, defaults: tuple[str, ...], flag: str, file: Path, *,
                required: bool = False) -> str | None:
    """`given` (which must exist), else the first of `defaults` present, else None (or, when
    `required`, an InvalidInputError naming the file, its columns and the flag)."""
    if given is not None:
        if given not in columns:
            raise InvalidInputError(f"{file}: no column {given!r} ({flag}); its columns are {list(columns)}")
        return given
    found = next((name for name in defaults if name in columns), None)
    if found is None and required:
        raise InvalidInputError(f"{file}: none of the columns {list(defaults)} exists; its columns are "
                                f"{list(columns)}: name it with {flag}")
    return found


def split_files(location: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """{split: file}: a file with one of `suffixes` is the "test" split; a directory's
    `{train,val,validation,test}<suffix>` files are its splits; {} for anything else."""
    if location.is_file():
        return {DEFAULT_SPLIT: location} if location.suffix.lower() in suffixes else {}
    if not location.is_dir():
        return {}
    found = {}
    for split in SPLIT_NAMES:
        for suffix in suffixes:
            if (location / f"{split}{suffix}").is_file():
                found.setdefault(split, location / f"{split}{suffix}")
    return found


def open_table_dataset(location: Path, *, suffixes: tuple[str, ...], layout: str, keys: TableKeys, name: str | None,
                       open_split: Callable[[Path, str, TableKeys], BenchmarkSplit]) -> BenchmarkDataset:
    """The table file(s) at `location` (a file, or a directory of `{split}<suffix>` files), each
    split opened by `open_split(path, split, keys)` when asked for; class names and templates from
    the files beside them."""
    files = split_files(location, suffixes)
    metadata_dir = location if location.is_dir() else location.parent
    base = location.name if location.is_dir() else location.stem
    return BenchmarkDataset(
        name=name or base, location=str(location), layout=layout, lookup_names=(base,), metadata_dir=metadata_dir,
        openers={split: partial(open_split, path, split, keys) for split, path in files.items()},
        classnames=own_list(metadata_dir, CLASSNAMES_FILE, "class names"),
        templates=own_list(metadata_dir, TEMPLATES_FILE, "templates"))
