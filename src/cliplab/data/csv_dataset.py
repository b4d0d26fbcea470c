"""Image-caption pairs listed in a CSV/TSV manifest (open_clip's `--csv-*` conventions).

The manifest has a header row; one column holds image paths (default `filepath`), one the caption
(default `title`: one caption, or several as a JSON list, `caption_lists`), optionally one an integer
class label. Columns are separated by a tab by default.
Relative image paths are resolved against the manifest's directory, so a dataset directory can move
as a whole. `open_manifest` is the one reader of manifests (the dataset and the tokenizer's caption
corpus use it): a manifest that is a directory, is not UTF-8 text, has a field longer than the csv
module's limit or is not valid CSV fails with one line naming the file and the line.
"""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from PIL import Image

from cliplab.data.caption_lists import captions_in_field, drawn_caption, sample_captions
from cliplab.data.images import decode_rgb_image
from cliplab.data.samples import BadSampleError, RawSample
from cliplab.errors import InvalidInputError, MissingInputError

DEFAULT_IMG_KEY = "filepath"
DEFAULT_CAPTION_KEY = "title"
DEFAULT_SEPARATOR = "\t"

T = TypeVar("T")


class ManifestRows:
    """The header and the rows of an open manifest; iterating yields (line number, row dict)."""

    def __init__(self, path: Path, handle, separator: str):
        self.path = path
        self._reader = csv.DictReader(handle, delimiter=separator)
        self.columns: list[str] = list(self._read(lambda: self._reader.fieldnames) or [])

    def __iter__(self) -> Iterator[tuple[int, dict[str, str]]]:
        rows = iter(self._reader)
        while True:
            try:
                row = self._read(lambda: next(rows))
            except StopIteration:
                return
            yield self._line, row

    @property
    def _line(self) -> int:
        """The physical line the reader reached (DictReader's own count lags behind on an error)."""
        return self._reader.reader.line_num

    def _read(self, read: Callable[[], T]) -> T:
        try:
            return read()
        except UnicodeDecodeError:
            raise InvalidInputError(_not_utf8(self.path)) from None
        except csv.Error as error:
            line = self._line
            if "field larger than field limit" in str(error):
                raise InvalidInputError(
                    f"manifest {self.path} line {line}: a field is longer than {csv.field_size_limit()} characters "
                    "(a caption that long, or a quote that is never closed)") from None
            raise InvalidInputError(f"manifest {self.path} line {line}: not valid CSV ({error})") from None


def _not_utf8(path: Path) -> str:
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        return (f"manifest {path} line {line}: not UTF-8 text (byte 0x{data[error.start]:02x}); save the manifest "
                "as UTF-8")
    return f"manifest {path}: not UTF-8 text"


@contextlib.contextmanager
def open_manifest(path: str | Path, separator: str) -> Iterator[ManifestRows]:
    """The rows of manifest `path`; MissingInputError when it does not exist, InvalidInputError when
    it is a directory or its content cannot be read (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"manifest {path} is a directory; expected a CSV or TSV file listing image paths "
                                "and captions")
    if not path.is_file():
        raise MissingInputError(f"manifest {path} does not exist")
    with open(path, newline="", encoding="utf-8") as handle:
        yield ManifestRows(path, handle, separator)


class CsvDataset:
    """Map-style dataset over a manifest; `read(index, epoch=e)` returns a RawSample (RGB image).

    The manifest is parsed once at construction (missing file or column fails at once); images are
    opened and fully decoded on read, so a missing, truncated or undecodable image raises
    BadSampleError naming its path, as does an empty caption. A cell holding several captions gives
    each epoch one of them (`caption_lists.drawn_caption`, keyed by caption_seed, the epoch and the
    row's index) and all of them as `captions`; a list that is empty or holds an element that is not
    text, or is blank, is refused at construction, naming its line (the manifest is read whole then).
    """

    def __init__(self, manifest: str | Path, *, img_key: str = DEFAULT_IMG_KEY,
                 caption_key: str = DEFAULT_CAPTION_KEY, separator: str = DEFAULT_SEPARATOR,
                 label_key: str | None = None, caption_seed: int = 0):
        self.manifest = Path(manifest)
        self.caption_seed = caption_seed
        if len(separator) != 1:
            raise InvalidInputError(f"separator must be one character, got {separator!r}")
        with open_manifest(self.manifest, separator) as manifest_rows:
            columns = manifest_rows.columns
            wanted = {"img_key": img_key, "caption_key": caption_key}
            if label_key is not None:
                wanted["label_key"] = label_key
            for argument, column in wanted.items():
                if column not in columns:
                    raise InvalidInputError(
                        f"manifest {self.manifest} has no column {column!r} ({argument}); its "
                        f"columns are {columns} (separator {separator!r})")
            rows = list(manifest_rows)
        if not rows:
            raise InvalidInputError(f"manifest {self.manifest} lists no samples")
        base = self.manifest.resolve().parent
        self.image_paths = [base / (row[img_key] or "") for _, row in rows]
        self.captions = [row[caption_key] or "" for _, row in rows]
        for (line, _), cell in zip(rows, self.captions):
            captions_in_field(cell, where=f"manifest {self.manifest} line {line}, column {caption_key!r}")
        self.labels = [self._parse_label(row, label_key, line) for line, row in rows] if label_key else [-1] * len(rows)

    def _parse_label(self, row: dict, label_key: str, line: int) -> int:
        value = row[label_key]
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InvalidInputError(f"manifest {self.manifest} line {line}: column {label_key!r} must hold "
                             f"an integer label, got {value!r}") from None

    def __len__(self) -> int:
        return len(self.image_paths)

    def read(self, index: int, *, epoch: int) -> RawSample:
        path = self.image_paths[index]
        captions = sample_captions(self.captions[index], source=str(path))
        caption = drawn_caption(captions, seed=self.caption_seed, epoch=epoch, key=index)
        return RawSample(image=load_rgb_image(path), caption=caption, label=self.labels[index],
                         source=str(path), captions=captions)


def load_rgb_image(path: Path) -> Image.Image:
    """The fully decoded image at `path` in RGB; BadSampleError when it is missing or unreadable."""
    if not path.exists():
        raise BadSampleError(str(path), "image file does not exist")
    return decode_rgb_image(path, str(path))
