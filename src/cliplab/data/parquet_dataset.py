"""Image-caption pairs in parquet files: img2dataset's parquet output and Hugging Face hub datasets.

A location is a parquet file, a directory (its `*.parquet` files, not its subdirectories) or a glob
(`data/train-*.parquet`, `**` allowed); files are taken in sorted order. One column holds the
image, as encoded bytes (img2dataset's `jpg`) or as `{"bytes", "path"}` structs (the hub's `Image`
feature; a struct without bytes is read from its path, relative to the parquet file's directory),
one the caption (strings, or lists of strings: several captions per image, `caption_lists`; each
epoch trains on one of them, keyed by caption_seed, the epoch and the sample's index), optionally
one an integer label. By default the image column is the first of
`image`, `jpg`, `png` and the caption column the first of `caption`, `text`, `txt` that the files
have.

Rows whose image is null are not samples: img2dataset writes such a row for every URL it failed
to fetch, and counting them as bad samples would stop most runs at the skip threshold. The index
leaves them out; the parquet statistics say which row groups hold nulls, and only those have
their image column read at construction to find them. Sample i is the i-th remaining row in file
order.

Files are read by row group, never whole: `read(i)` reads the row group that holds sample i
(the image, caption and label columns only) and keeps the most recently used ones, up to
ROW_GROUP_CACHE_BYTES per process. A read that misses the cache costs one row group; img2dataset
and the hub write row groups of about 100 rows, which keeps that cheap. Undecodable bytes and empty
captions raise BadSampleError naming the file and row, as the CSV source does; the loader counts,
replaces and reports them.

A row group whose pages cannot be read (a damaged page header: "Couldn't deserialize thrift", a
truncated or garbled chunk) makes each of its rows a bad sample in the same way, counted once per
row drawn, while the rest of the file trains: the footer still gives the group's row count, the
index keeps its rows, and the first failed read is remembered so that its other rows fail without
reading the file again. `parquet_captions` (the tokenizer's corpus) passes over such a group.
"""

from __future__ import annotations

import glob
import io
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from cliplab.data.caption_lists import corpus_captions, drawn_caption, sample_captions
from cliplab.data.csv_dataset import load_rgb_image
from cliplab.data.images import decode_rgb_image
from cliplab.data.samples import BadSampleError, RawSample
from cliplab.errors import UserError

PARQUET_IMAGE_KEYS = ("image", "jpg", "png")
PARQUET_CAPTION_KEYS = ("caption", "text", "txt")
ROW_GROUP_CACHE_BYTES = 64 * 2**20  # per process: each DataLoader worker has its own
OPEN_FILES_KEPT = 8


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.parquet
    except ImportError:
        raise UserError("dataset_type 'parquet' needs pyarrow: pip install 'cliplab[parquet]'") from None
    return pyarrow


def parquet_files(location: str | Path) -> list[Path]:
    """The parquet files `location` names: a file, a directory's `*.parquet`, or a glob; sorted."""
    path = Path(location)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(child for child in path.glob("*.parquet") if child.is_file())
        if not files:
            raise UserError(f"parquet data {str(location)!r}: the directory holds no *.parquet files")
        return files
    files = sorted(Path(match) for match in glob.glob(str(location), recursive=True)
                   if Path(match).is_file())
    if not files:
        raise UserError(f"parquet data {str(location)!r}: no such file, directory, or files matching "
                        "it as a glob")
    return files


@dataclass(frozen=True)
class ParquetColumns:
    """The columns a parquet source reads: `image_is_struct` for `{"bytes", "path"}` images."""

    image: str
    caption: str
    label: str | None
    image_is_struct: bool

    @property
    def names(self) -> list[str]:
        return [self.image, self.caption] + ([self.label] if self.label else [])


def _pick_column(schema, given: str | None, defaults: tuple[str, ...], *, holds: str, key: str,
                 flag: str, file: Path) -> str:
    if given is not None:
        if given not in schema.names:
            raise UserError(f"{file}: no column {given!r} ({key}, {flag}); its columns are "
                            f"{schema.names}")
        return given
    for name in defaults:
        if name in schema.names:
            return name
    raise UserError(f"{file}: none of the columns {list(defaults)} holds the {holds}; its columns are "
                    f"{schema.names}: name the {holds} column with {flag} ({key})")


def resolve_columns(schema, file: Path, *, image_key: str | None, caption_key: str | None,
                    label_key: str | None) -> ParquetColumns:
    """The image, caption and label columns of `schema` (a pyarrow schema of `file`), type-checked."""
    pa = _pyarrow()
    image = _pick_column(schema, image_key, PARQUET_IMAGE_KEYS, holds="images",
                         key="data.parquet_image_key", flag="--parquet-image-key", file=file)
    caption = _pick_column(schema, caption_key, PARQUET_CAPTION_KEYS, holds="captions",
                           key="data.parquet_caption_key", flag="--parquet-caption-key", file=file)
    if label_key is not None:
        _pick_column(schema, label_key, (), holds="labels", key="data.parquet_label_key",
                     flag="--parquet-label-key", file=file)
    image_type = schema.field(image).type
    is_struct = pa.types.is_struct(image_type)
    if is_struct:
        fields = {image_type.field(i).name: image_type.field(i).type for i in range(image_type.num_fields)}
        if "bytes" not in fields or not _is_binary(pa, fields["bytes"]):
            raise UserError(f"{file}: image column {image!r} is a struct without a binary 'bytes' "
                            f"field ({image_type}); expected encoded image bytes or "
                            "{'bytes': binary, 'path': string} structs")
    elif not _is_binary(pa, image_type):
        raise UserError(f"{file}: image column {image!r} holds {image_type}; expected encoded image "
                        "bytes or {'bytes': binary, 'path': string} structs")
    caption_type = schema.field(caption).type
    if not (_is_text(pa, caption_type) or (_is_list(pa, caption_type) and _is_text(pa, caption_type.value_type))):
        raise UserError(f"{file}: caption column {caption!r} holds {caption_type}; expected strings or lists of "
                        "strings")
    if label_key is not None and not pa.types.is_integer(schema.field(label_key).type):
        raise UserError(f"{file}: label column {label_key!r} holds {schema.field(label_key).type}; "
                        "expected integers")
    return ParquetColumns(image=image, caption=caption, label=label_key, image_is_struct=is_struct)


def _is_binary(pa, data_type) -> bool:
    return pa.types.is_binary(data_type) or pa.types.is_large_binary(data_type)


def _is_text(pa, data_type) -> bool:
    return pa.types.is_string(data_type) or pa.types.is_large_string(data_type)


def _is_list(pa, data_type) -> bool:
    return pa.types.is_list(data_type) or pa.types.is_large_list(data_type)


def open_parquet_data(location: str | Path, *, image_key: str | None, caption_key: str | None,
                      label_key: str | None) -> tuple[list[Path], ParquetColumns]:
    """(the files of `location`, the columns to read), every file checked to have those columns
    with the types of the first (only the footers are read)."""
    pa = _pyarrow()
    files = parquet_files(location)
    first = _read_schema(pa, files[0])
    columns = resolve_columns(first, files[0], image_key=image_key, caption_key=caption_key,
                              label_key=label_key)
    for file in files[1:]:
        schema = _read_schema(pa, file)
        for name in columns.names:
            if name not in schema.names or schema.field(name).type != first.field(name).type:
                found = schema.field(name).type if name in schema.names else "no such column"
                raise UserError(f"{file}: column {name!r} must be {first.field(name).type} as in "
                                f"{files[0]}, found {found}")
    return files, columns


def _read_schema(pa, file: Path):
    try:
        return pa.parquet.read_schema(file)
    except (OSError, pa.ArrowException) as error:
        raise UserError(f"{file}: cannot read it as parquet ({error})") from None


def _parquet_file(pa, file: Path):
    try:
        return pa.parquet.ParquetFile(file)
    except (OSError, pa.ArrowException) as error:
        raise UserError(f"{file}: cannot read it as parquet ({error})") from None


class ParquetDataset:
    """Map-style dataset over parquet files; `read(index, epoch=e)` returns a RawSample (RGB image).

    The files' footers are read at construction (a missing column or a wrong type fails at once,
    naming the file); rows are read by row group on demand (module docstring). At most
    OPEN_FILES_KEPT files are open at a time.
    """

    def __init__(self, location: str | Path, *, image_key: str | None = None,
                 caption_key: str | None = None, label_key: str | None = None, caption_seed: int = 0):
        self.location = str(location)
        self.caption_seed = caption_seed
        self.files, self.columns = open_parquet_data(location, image_key=image_key,
                                                     caption_key=caption_key, label_key=label_key)
        groups: list[tuple[int, int, int]] = []  # (file index, row group, its first row in the file)
        kept_rows: list[np.ndarray | None] = []  # per group: the rows with an image (None: all)
        sizes = []
        pa = _pyarrow()
        for file_index, file in enumerate(self.files):
            with _parquet_file(pa, file) as handle:
                first_row = 0
                for row_group in range(handle.metadata.num_row_groups):
                    rows = self._rows_with_image(handle, row_group)
                    groups.append((file_index, row_group, first_row))
                    kept_rows.append(rows)
                    num_rows = handle.metadata.row_group(row_group).num_rows
                    sizes.append(num_rows if rows is None else len(rows))
                    first_row += num_rows
        self._groups = groups
        self._kept_rows = kept_rows
        self._group_starts = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
        if len(self) == 0:
            raise UserError(f"parquet data {self.location!r}: no row has an image (column "
                            f"{self.columns.image!r})")
        self._handles: OrderedDict[int, object] = OrderedDict()
        self._tables: OrderedDict[int, object] = OrderedDict()
        self._cached_bytes = 0
        self._unreadable: dict[int, str] = {}  # group -> why its read failed (per process)

    def _rows_with_image(self, handle, row_group: int) -> np.ndarray | None:
        """The rows of `row_group` whose image is not null; None when the statistics show there
        are no nulls (the common case: nothing is read), or when the group cannot be read (its rows
        are then bad samples when drawn)."""
        leaf = f"{self.columns.image}.bytes" if self.columns.image_is_struct else self.columns.image
        metadata = handle.metadata.row_group(row_group)
        for column in range(metadata.num_columns):
            chunk = metadata.column(column)
            if chunk.path_in_schema == leaf:
                statistics = chunk.statistics
                if statistics is not None and statistics.has_null_count and statistics.null_count == 0:
                    return None
        pa = _pyarrow()
        compute = pa.compute
        try:
            images = handle.read_row_group(row_group, columns=[self.columns.image]).column(0).combine_chunks()
        except (OSError, pa.ArrowException):
            return None
        present = compute.is_valid(images)
        if self.columns.image_is_struct:
            fields = images.flatten()  # the children, with the struct's own nulls applied
            names = [images.type.field(i).name for i in range(images.type.num_fields)]
            has_bytes = compute.is_valid(fields[names.index("bytes")])
            has_path = compute.is_valid(fields[names.index("path")]) if "path" in names else has_bytes
            present = compute.and_(present, compute.or_(has_bytes, has_path))
        mask = present.to_numpy(zero_copy_only=False)
        return None if mask.all() else np.flatnonzero(mask)

    def __len__(self) -> int:
        return int(self._group_starts[-1])

    def __getstate__(self) -> dict:
        # pyarrow file handles do not pickle: each DataLoader worker opens its own.
        return {**self.__dict__, "_handles": OrderedDict(), "_tables": OrderedDict(), "_cached_bytes": 0,
                "_unreadable": {}}

    def _position(self, index: int) -> tuple[int, int]:
        """(group, row within the row group) of sample `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"sample {index} out of range for {len(self)} samples")
        group = int(np.searchsorted(self._group_starts, index, side="right")) - 1
        local = index - int(self._group_starts[group])
        rows = self._kept_rows[group]
        return group, local if rows is None else int(rows[local])

    def locate(self, index: int) -> tuple[Path, int]:
        """(file, row in that file) of sample `index`."""
        group, row = self._position(index)
        file_index, _, first_row = self._groups[group]
        return self.files[file_index], first_row + row

    def _handle(self, file_index: int):
        handle = self._handles.pop(file_index, None)
        if handle is None:
            handle = _parquet_file(_pyarrow(), self.files[file_index])
        self._handles[file_index] = handle
        if len(self._handles) > OPEN_FILES_KEPT:
            self._handles.popitem(last=False)[1].close()
        return handle

    def _table(self, group: int, source: str):
        """The row group `group` (image, caption and label columns), through a cache of the most
        recently used row groups, ROW_GROUP_CACHE_BYTES at most. BadSampleError naming `source` (the
        sample wanted) when the group cannot be read."""
        table = self._tables.get(group)
        if table is not None:
            self._tables.move_to_end(group)
            return table
        file_index, row_group, _ = self._groups[group]
        if group not in self._unreadable:
            pa = _pyarrow()
            try:
                table = self._handle(file_index).read_row_group(row_group, columns=self.columns.names)
            except (OSError, pa.ArrowException) as error:
                reason = " ".join(str(error).split())  # pyarrow's message spans lines
                self._unreadable[group] = f"row group {row_group} of the file cannot be read ({reason})"
        if group in self._unreadable:
            raise BadSampleError(source, self._unreadable[group])
        self._tables[group] = table
        self._cached_bytes += table.nbytes
        while self._cached_bytes > ROW_GROUP_CACHE_BYTES and len(self._tables) > 1:  # the newest stays
            self._cached_bytes -= self._tables.popitem(last=False)[1].nbytes
        return table

    def read(self, index: int, *, epoch: int) -> RawSample:
        group, row = self._position(index)
        file_index, _, first_row = self._groups[group]
        file = self.files[file_index]
        source = f"{file}:row {first_row + row}"
        table = self._table(group, source)
        field = table.column(self.columns.caption)[row].as_py()
        captions = sample_captions("" if field is None else field, source=source)
        caption = drawn_caption(captions, seed=self.caption_seed, epoch=epoch, key=index)
        label = table.column(self.columns.label)[row].as_py() if self.columns.label else None
        image = table.column(self.columns.image)[row].as_py()
        if self.columns.image_is_struct and image.get("bytes") is None:
            rgb = load_rgb_image(file.resolve().parent / image["path"])
        else:
            rgb = decode_rgb_image(io.BytesIO(image["bytes"] if self.columns.image_is_struct else image),
                                   source)
        return RawSample(image=rgb, caption=caption, label=-1 if label is None else int(label),
                         source=source, captions=captions)


def parquet_captions(location: str | Path, *, caption_key: str | None = None,
                     image_key: str | None = None) -> Iterator[str]:
    """The non-empty captions (stripped) of parquet data in file order, every caption of a list,
    reading only the caption column, one row group at a time. Rows without an image are included:
    finding them would mean reading the images. A row group that cannot be read is passed over
    (training counts its rows as bad samples)."""
    files, columns = open_parquet_data(location, image_key=image_key, caption_key=caption_key,
                                       label_key=None)
    pa = _pyarrow()
    for file in files:
        with _parquet_file(pa, file) as handle:
            for row_group in range(handle.metadata.num_row_groups):
                try:
                    captions = handle.read_row_group(row_group, columns=[columns.caption]).column(0)
                except (OSError, pa.ArrowException):
                    continue
                yield from (caption for value in captions.to_pylist() for caption in corpus_captions(value))
