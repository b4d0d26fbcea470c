"""What every benchmark dataset reader hands the evaluation: splits of images with labels or captions,
and the dataset's own class names and templates.

A reader (one module per layout in this package) turns a location into a `BenchmarkDataset`. Its
splits open lazily (`dataset.split("test")`): a `BenchmarkSplit` holds N images, readable one at a
time in any order (`images.read(i)`, decoded RGB, so the evaluation can decode in parallel
workers), and, known up front, N labels or N tuples of captions (an image may have several, as in
COCO and Flickr) or both. Class names and templates are the dataset's own (`classnames.txt`,
`zeroshot_classification_templates.txt` or the built-in set's); built-in fallbacks by dataset name
are the caller's (`class_names.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Protocol

from PIL import Image

from cliplab.errors import InvalidInputError, UserError


class ImageReader(Protocol):
    """N images by index: `read(i)` -> RGB PIL image (raises `BadSampleError` naming `source(i)`
    when it cannot be decoded). Picklable, so DataLoader workers can read."""

    def __len__(self) -> int: ...

    def read(self, index: int) -> Image.Image: ...

    def source(self, index: int) -> str: ...


@dataclass(frozen=True)
class BenchmarkSplit:
    """One split: N images with N labels (class indices), N caption tuples, or both.

    where: the file or directory the split was read from, named in error messages.
    """

    name: str
    images: ImageReader
    labels: tuple[int, ...] | None
    captions: tuple[tuple[str, ...], ...] | None
    where: str

    def __post_init__(self) -> None:
        count = len(self.images)
        if count == 0:
            raise InvalidInputError(f"{self.where}: split {self.name!r} holds no images")
        for what, values in (("labels", self.labels), ("caption lists", self.captions)):
            if values is not None and len(values) != count:
                raise ValueError(f"{self.where}: {len(values)} {what} for {count} images")
        if self.labels is None and self.captions is None:
            raise InvalidInputError(f"{self.where}: split {self.name!r} has neither labels nor captions")

    def __len__(self) -> int:
        return len(self.images)

    def check_labels(self, num_classes: int, classnames_source: str) -> None:
        """InvalidInputError naming both files unless every label lies in [0, num_classes)."""
        if self.labels is None:
            return
        low, high = min(self.labels), max(self.labels)
        if low < 0 or high >= num_classes:
            raise InvalidInputError(f"{self.where}: labels run from {low} to {high} but {classnames_source} names "
                                    f"{num_classes} classes (labels must lie in [0, {num_classes}))")


@dataclass(frozen=True)
class NamedList:
    """Class names or templates, with where they came from (a file, or a built-in set)."""

    values: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class BenchmarkDataset:
    """A dataset as a reader found it.

    name: what result files call it (CLIP_benchmark's `dataset` field); lookup_names: the names under
    which built-in class names and templates are looked up, most specific first; layout: the reader's
    name; metadata_dir: where the dataset's own `classnames.txt` and templates file are (or would be);
    classnames / templates: the dataset's own, None where it has none; retrieval_only: the dataset
    says it is a retrieval set (CLIP_benchmark's `dataset_type.txt`), so its labels are not used.
    """

    name: str
    location: str
    layout: str
    lookup_names: tuple[str, ...]
    metadata_dir: Path | None
    openers: Mapping[str, Callable[[], BenchmarkSplit]]
    classnames: NamedList | None = None
    templates: NamedList | None = None
    retrieval_only: bool = False
    _opened: dict[str, BenchmarkSplit] = field(default_factory=dict, repr=False, compare=False)

    @property
    def split_names(self) -> tuple[str, ...]:
        return tuple(self.openers)

    def has_split(self, name: str) -> bool:
        return name in self.openers

    def split(self, name: str) -> BenchmarkSplit:
        """Split `name`, opened once; a UserError listing the splits there are otherwise."""
        if name not in self.openers:
            raise UserError(f"{self.location}: no split {name!r}; its splits are {list(self.openers) or 'none'}")
        if name not in self._opened:
            self._opened[name] = self.openers[name]()
        return self._opened[name]
