"""ImageFolder trees (torchvision's layout): one sub-folder of images per class.

    DIR/<class>/<images, at any depth>                      one split, "test"
    DIR/{train,val,test}/<class>/<images, at any depth>     one split per folder of class folders

Classes are the sorted class-folder names (over all splits, so a label means the same class in
every split) and images are listed in torchvision's order (class by class; `os.walk` sorted, file
names sorted), so features come in the order CLIP_benchmark's ImageFolder gives them. Class names:
`DIR/classnames.txt` when present; the ImageNet names when every class folder is an ImageNet
WordNet id (ImageNet-1k, and subsets such as ImageNet-R's 200); else the folder names with `_` read
as a space. Templates: `DIR/zeroshot_classification_templates.txt`, else the built-in ones by name
(ImageNet's for WordNet-id folders).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from PIL import Image

from cliplab.data.benchmark.class_names import (CLASSNAMES_FILE, IMAGENET, TEMPLATES_FILE, builtin_classnames,
                                                imagenet_wnids, own_list)
from cliplab.data.benchmark.dataset import BenchmarkDataset, BenchmarkSplit, NamedList
from cliplab.data.csv_dataset import load_rgb_image
from cliplab.errors import InvalidInputError

LAYOUT = "image_folder"
# torchvision's IMG_EXTENSIONS.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
SPLIT_FOLDERS = ("train", "val", "validation", "test")
DEFAULT_SPLIT = "test"


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def class_folder_names(directory: Path) -> list[str]:
    """The sorted names of `directory`'s sub-folders (hidden ones left out)."""
    return sorted(entry.name for entry in os.scandir(directory) if entry.is_dir() and not entry.name.startswith("."))


def images_of_class(folder: Path) -> list[Path]:
    """The image files under `folder` in torchvision's order (sorted walk, sorted names)."""
    return [Path(root) / name for root, _, names in sorted(os.walk(folder, followlinks=True))
            for name in sorted(names) if is_image_name(name)]


def _holds_images_directly(directory: Path) -> bool:
    return any(entry.is_file() and is_image_name(entry.name) for entry in os.scandir(directory))


def split_folders(location: Path) -> dict[str, Path]:
    """{split: folder}: the `train` / `val` / `validation` / `test` sub-folders that hold class
    folders and no images of their own; {"test": location} when there are none."""
    found = {name: location / name for name in SPLIT_FOLDERS
             if (location / name).is_dir() and class_folder_names(location / name)
             and not _holds_images_directly(location / name)}
    return found or {DEFAULT_SPLIT: location}


def detect(location: Path) -> bool:
    """A directory whose sub-folders (or its split folders' sub-folders) hold images."""
    if not location.is_dir():
        return False
    return any(class_folder_names(folder) for folder in split_folders(location).values())


@dataclass(frozen=True)
class ImageFiles:
    """Images read from files by index."""

    paths: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, index: int) -> Image.Image:
        return load_rgb_image(self.paths[index])

    def source(self, index: int) -> str:
        return str(self.paths[index])


def open_dataset(location: Path, *, name: str | None = None) -> BenchmarkDataset:
    """The ImageFolder tree at `location` (layout: module docstring)."""
    folders = split_folders(location)
    classes = sorted({name for folder in folders.values() for name in class_folder_names(folder)})
    if not classes:
        raise InvalidInputError(f"{location}: no class folders; expected DIR/<class>/<images>")
    base = location.resolve().name
    classnames = own_list(location, CLASSNAMES_FILE, "class names")
    lookup: tuple[str, ...] = (base,)
    wnids = imagenet_wnids()
    if set(classes) <= set(wnids):
        lookup = (base, IMAGENET)
        if classnames is None:
            names = builtin_classnames("en")[IMAGENET]
            index = {wnid: position for position, wnid in enumerate(wnids)}
            classnames = NamedList(tuple(names[index[wnid]] for wnid in classes),
                                   "the ImageNet class names of its WordNet-id folders")
    if classnames is None:
        classnames = NamedList(tuple(name.replace("_", " ") for name in classes), f"the class folders of {location}")
    return BenchmarkDataset(
        name=name or base, location=str(location), layout=LAYOUT, lookup_names=lookup, metadata_dir=location,
        openers={split: partial(_open_split, folder, split, tuple(classes)) for split, folder in folders.items()},
        classnames=classnames, templates=own_list(location, TEMPLATES_FILE, "templates"))


def _open_split(folder: Path, split: str, classes: tuple[str, ...]) -> BenchmarkSplit:
    paths, labels = [], []
    for label, name in enumerate(classes):
        if (folder / name).is_dir():
            found = images_of_class(folder / name)
            paths.extend(found)
            labels.extend([label] * len(found))
    return BenchmarkSplit(name=split, images=ImageFiles(tuple(paths)), labels=tuple(labels), captions=None,
                          where=str(folder))
