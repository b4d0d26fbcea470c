"""Images named by the user: files, a directory tree, class-named sub-folders, or a manifest.

Everything here turns paths into preprocessed batches; decoding uses the data package's reader, so
a broken image fails with its path in the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader

from cliplab.data.csv_dataset import (DEFAULT_CAPTION_KEY, DEFAULT_IMG_KEY, DEFAULT_SEPARATOR,
                                      CsvDataset, load_rgb_image)
from cliplab.data.samples import BadSampleError
from cliplab.errors import InvalidInputError, MissingInputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")

Preprocess = Callable[[Image.Image], torch.Tensor]


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def list_images(directory: str | Path) -> list[Path]:
    """Every image file under `directory` (recursively), in sorted path order."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingInputError(f"image directory {directory} does not exist or is not a directory")
    paths = sorted(path for path in directory.rglob("*") if is_image_file(path))
    if not paths:
        raise InvalidInputError(f"image directory {directory} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    return paths


@dataclass(frozen=True)
class ClassFolders:
    """Labelled images of an ImageNet-style tree: one sub-folder per class.

    classnames: C names, the sorted folder names with "_" read as a space; paths / labels: one entry
    per image, label in [0, C).
    """

    classnames: tuple[str, ...]
    paths: tuple[Path, ...]
    labels: tuple[int, ...]


def class_folders(directory: str | Path) -> ClassFolders:
    """Read `directory`/<class name>/<images...>; every class folder must hold an image."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingInputError(f"--classes-from-folders: {directory} does not exist or is not a directory")
    folders = sorted(path for path in directory.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not folders:
        raise InvalidInputError(f"--classes-from-folders: {directory} has no sub-folders; expected one per class")
    paths, labels = [], []
    for label, folder in enumerate(folders):
        images = sorted(path for path in folder.rglob("*") if is_image_file(path))
        if not images:
            raise InvalidInputError(f"--classes-from-folders: class folder {folder} holds no image files")
        paths.extend(images)
        labels.extend([label] * len(images))
    classnames = tuple(folder.name.replace("_", " ") for folder in folders)
    return ClassFolders(classnames=classnames, paths=tuple(paths), labels=tuple(labels))


@dataclass(frozen=True)
class ManifestImages:
    """Image paths (resolved), captions and line numbers (the header is line 1, the first row line 2)
    of a CSV/TSV manifest's rows, in file order."""

    paths: tuple[Path, ...]
    captions: tuple[str, ...]
    lines: tuple[int, ...]


def manifest_images(manifest: str | Path, img_key: str = DEFAULT_IMG_KEY,
                    caption_key: str = DEFAULT_CAPTION_KEY,
                    separator: str = DEFAULT_SEPARATOR) -> ManifestImages:
    """The images and captions a manifest lists (columns as in `CsvDataset`)."""
    dataset = CsvDataset(manifest, img_key=img_key, caption_key=caption_key, separator=separator)
    return ManifestImages(paths=tuple(dataset.image_paths), captions=tuple(dataset.captions),
                          lines=tuple(range(2, len(dataset) + 2)))


def load_image(path: Path) -> Image.Image:
    """The RGB image at `path`; MissingInputError / InvalidInputError naming the path otherwise."""
    if not path.is_file():
        raise MissingInputError(f"image {path} does not exist")
    try:
        return load_rgb_image(path)
    except BadSampleError as error:
        raise InvalidInputError(f"image {path} cannot be read: {error.reason}") from None


class _PreprocessedBatches:
    """A DataLoader "dataset" whose item for a list of indices is their stacked preprocessed images."""

    def __init__(self, paths: Sequence[Path], preprocess: Preprocess):
        self.paths, self.preprocess = paths, preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, indices: list[int]) -> torch.Tensor:
        return torch.stack([self.preprocess(load_image(Path(self.paths[index]))) for index in indices])


def _itself(batch):
    return batch


def image_batches(paths: Sequence[Path], preprocess: Preprocess, batch_size: int, workers: int = 0
                  ) -> Iterator[torch.Tensor]:
    """Float[B, 3, H, W] batches of the preprocessed images at `paths`, in order; decoded and
    preprocessed by `workers` DataLoader processes (0: in this process), a few batches ahead of
    the model. An unreadable image raises its error (naming the path) in this process either way."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    batches = [list(range(start, min(start + batch_size, len(paths)))) for start in range(0, len(paths), batch_size)]
    dataset = _PreprocessedBatches(paths, preprocess)
    if workers == 0:
        yield from (dataset[indices] for indices in batches)
        return
    yield from DataLoader(dataset, batch_size=None, sampler=batches, num_workers=workers, collate_fn=_itself,
                          prefetch_factor=2)


def labelled_image_batches(paths: Sequence[Path], labels: Sequence[int], preprocess: Preprocess,
                           batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
    """{"images": Float[B, 3, H, W], "labels": Long[B]} batches, in order."""
    for start, images in zip(range(0, len(paths), batch_size), image_batches(paths, preprocess, batch_size)):
        yield {"images": images, "labels": torch.tensor(labels[start:start + len(images)], dtype=torch.long)}
