"""Parquet files as benchmark datasets: encoded images with an integer label, captions, or both.

    FILE.parquet                                     one split, "test"
    DIR/{train,val,test}.parquet                     one split per file
    classnames.txt, zeroshot_classification_templates.txt beside them (optional)

Columns: the image (`image_key`, default the first of `image`, `jpg`, `png`), encoded bytes or the
hub's `{"bytes", "path"}` structs (a path relative to the file); an integer label (`label_key`,
default `label`); captions (`caption_key`, default the first of `caption`, `captions`, `text`,
`txt`): a string (one caption, or a JSON list of them) or a list of strings per row
(`caption_lists.py`). One row is one image. The label and caption columns are read whole when the
split opens; images are read a row group at a time, the last one kept.
"""

from __future__ import annotations

import io
from bisect import bisect_right
from pathlib import Path

from PIL import Image

from cliplab.data.benchmark.dataset import BenchmarkDataset, BenchmarkSplit
from cliplab.data.benchmark.table_keys import TableKeys, open_table_dataset, pick_column, split_files
from cliplab.data.caption_lists import captions_in_field
from cliplab.data.csv_dataset import load_rgb_image
from cliplab.data.images import decode_rgb_image
from cliplab.errors import InvalidInputError, UserError

LAYOUT = "parquet"
SUFFIXES = (".parquet",)
IMAGE_KEYS = ("image", "jpg", "png")
CAPTION_KEYS = ("caption", "captions", "text", "txt")
LABEL_KEYS = ("label",)


def _parquet():
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise UserError("parquet datasets need pyarrow: pip install 'cliplab[parquet]'") from None
    return parquet


def detect(location: Path) -> bool:
    return bool(split_files(location, SUFFIXES))


def open_dataset(location: Path, *, keys: TableKeys, name: str | None = None) -> BenchmarkDataset:
    """The parquet file(s) at `location` (layout: module docstring)."""
    return open_table_dataset(location, suffixes=SUFFIXES, layout=LAYOUT, keys=keys, name=name, open_split=_open_split)


class ParquetImages:
    """The images of a parquet file's image column, by row (row group cache of one)."""

    def __init__(self, file: Path, column: str, row_group_starts: list[int], count: int):
        self.file, self.column, self.row_group_starts, self.count = file, column, row_group_starts, count
        self._cached: tuple[int, list] | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cached": None}

    def __len__(self) -> int:
        return self.count

    def source(self, index: int) -> str:
        return f"{self.file}:row {index}"

    def read(self, index: int) -> Image.Image:
        group = bisect_right(self.row_group_starts, index) - 1
        if self._cached is None or self._cached[0] != group:
            with _parquet().ParquetFile(self.file) as handle:
                values = handle.read_row_group(group, columns=[self.column]).column(0).to_pylist()
            self._cached = (group, values)
        value = self._cached[1][index - self.row_group_starts[group]]
        if isinstance(value, dict):
            if value.get("bytes") is None:
                return load_rgb_image(self.file.resolve().parent / value["path"])
            value = value["bytes"]
        return decode_rgb_image(io.BytesIO(value), self.source(index))


def _open_split(file: Path, split: str, keys: TableKeys) -> BenchmarkSplit:
    parquet = _parquet()
    try:
        handle = parquet.ParquetFile(file)
    except Exception as error:  # pyarrow raises its own ArrowInvalid / OSError kinds for a bad file
        raise InvalidInputError(f"{file}: cannot read it as parquet ({error})") from None
    with handle:
        columns = handle.schema_arrow.names
        image_key = pick_column(columns, keys.image_key, IMAGE_KEYS, "--image-key", file, required=True)
        label_key = pick_column(columns, keys.label_key, LABEL_KEYS, "--label-key", file)
        caption_key = pick_column(columns, keys.caption_key, CAPTION_KEYS, "--caption-key", file)
        if label_key is None and caption_key is None:
            raise InvalidInputError(f"{file}: neither a label column ({', '.join(LABEL_KEYS)}) nor a caption column "
                                    f"({', '.join(CAPTION_KEYS)}); its columns are {columns}: name them with "
                                    "--label-key / --caption-key")
        metadata = handle.metadata
        starts = [0]
        for group in range(metadata.num_row_groups):
            starts.append(starts[-1] + metadata.row_group(group).num_rows)
        wanted = [key for key in (label_key, caption_key) if key]
        table = handle.read(columns=wanted)
    labels = captions = None
    if label_key:
        values = table.column(label_key).to_pylist()
        bad = next((row for row, value in enumerate(values) if not isinstance(value, int) or isinstance(value, bool)),
                   None)
        if bad is not None:
            raise InvalidInputError(f"{file}: row {bad} column {label_key!r} must hold an integer label, "
                                    f"got {values[bad]!r}")
        labels = tuple(values)
    if caption_key:
        captions = tuple(_row_captions(value, f"{file}: row {row} column {caption_key!r}")
                         for row, value in enumerate(table.column(caption_key).to_pylist()))
    return BenchmarkSplit(name=split, images=ParquetImages(file, image_key, starts[:-1], starts[-1]),
                          labels=labels, captions=captions, where=str(file))


def _row_captions(value, where: str) -> tuple[str, ...]:
    if value is None:
        raise InvalidInputError(f"{where}: no caption")
    found = captions_in_field(value, where=where)
    if not all(caption.strip() for caption in found):
        raise InvalidInputError(f"{where}: blank caption")
    return found
