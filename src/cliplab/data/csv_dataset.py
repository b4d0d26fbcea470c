"""Image-caption pairs listed in a CSV/TSV manifest (open_clip's `--csv-*` conventions).

The manifest has a header row; one column holds image paths (default `filepath`), one the caption
(default `title`), optionally one an integer class label. Columns are separated by a tab by default.
Relative image paths are resolved against the manifest's directory, so a dataset directory can move
as a whole.
"""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image

from cliplab.data.images import decode_rgb_image
from cliplab.data.samples import BadSampleError, RawSample
from cliplab.errors import InvalidInputError, MissingInputError

DEFAULT_IMG_KEY = "filepath"
DEFAULT_CAPTION_KEY = "title"
DEFAULT_SEPARATOR = "\t"


class CsvDataset:
    """Map-style dataset over a manifest; `read(index, epoch=e)` returns a RawSample (RGB image).

    The manifest is parsed once at construction (missing file or column fails at once); images are
    opened and fully decoded on read, so a missing, truncated or undecodable image raises
    BadSampleError naming its path, as does an empty caption.
    """

    def __init__(self, manifest: str | Path, *, img_key: str = DEFAULT_IMG_KEY,
                 caption_key: str = DEFAULT_CAPTION_KEY, separator: str = DEFAULT_SEPARATOR,
                 label_key: str | None = None):
        self.manifest = Path(manifest)
        if not self.manifest.is_file():
            raise MissingInputError(f"manifest {self.manifest} does not exist")
        if len(separator) != 1:
            raise InvalidInputError(f"separator must be one character, got {separator!r}")
        with open(self.manifest, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle, delimiter=separator)
            columns = reader.fieldnames or []
            wanted = {"img_key": img_key, "caption_key": caption_key}
            if label_key is not None:
                wanted["label_key"] = label_key
            for argument, column in wanted.items():
                if column not in columns:
                    raise InvalidInputError(
                        f"manifest {self.manifest} has no column {column!r} ({argument}); its "
                        f"columns are {columns} (separator {separator!r})")
            rows = list(reader)
        if not rows:
            raise InvalidInputError(f"manifest {self.manifest} lists no samples")
        base = self.manifest.resolve().parent
        self.image_paths = [base / (row[img_key] or "") for row in rows]
        self.captions = [row[caption_key] or "" for row in rows]
        self.labels = [self._parse_label(row, label_key, line) for line, row in
                       enumerate(rows, start=2)] if label_key else [-1] * len(rows)

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
        del epoch  # a manifest's captions are fixed
        path = self.image_paths[index]
        caption = self.captions[index].strip()
        if not caption:
            raise BadSampleError(str(path), "empty caption")
        return RawSample(image=load_rgb_image(path), caption=caption, label=self.labels[index],
                         source=str(path))


def load_rgb_image(path: Path) -> Image.Image:
    """The fully decoded image at `path` in RGB; BadSampleError when it is missing or unreadable."""
    if not path.exists():
        raise BadSampleError(str(path), "image file does not exist")
    return decode_rgb_image(path, str(path))
