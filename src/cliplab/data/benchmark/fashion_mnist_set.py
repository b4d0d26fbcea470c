"""The built-in benchmark dataset `fashion-mnist`: Fashion-MNIST's train and test splits with labels,
its class names and templates (`fashion_mnist.py`), and CAPTIONS_PER_IMAGE generated captions per
image (those of epochs 0 .. CAPTIONS_PER_IMAGE - 1), so retrieval has several captions per image as
COCO does. The idx files are found as for training (`fashion_mnist_files.locate_fashion_mnist`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from PIL import Image

from cliplab.data.benchmark.dataset import BenchmarkDataset, BenchmarkSplit, NamedList
from cliplab.data.fashion_mnist import FASHION_MNIST_CLASSNAMES, FASHION_MNIST_TEMPLATES, FashionMnistDataset
from cliplab.data.fashion_mnist_files import SPLITS
from cliplab.data.sources.fashion_mnist import NAME

LAYOUT = "builtin"
CAPTIONS_PER_IMAGE = 5


@dataclass(frozen=True)
class FashionMnistImages:
    """A split's images as the training reader hands them on (28x28 RGB)."""

    source_set: FashionMnistDataset

    def __len__(self) -> int:
        return len(self.source_set)

    def read(self, index: int) -> Image.Image:
        return self.source_set.read(index, epoch=0).image

    def source(self, index: int) -> str:
        return f"{NAME}/{self.source_set.split}/{index}"


def open_dataset(*, data_dir: str | Path | None = None, cache_dir: str | Path | None = None,
                 download: bool = True) -> BenchmarkDataset:
    """Fashion-MNIST (the idx files in `data_dir`, else the system copy, the cache (`cache_dir`,
    None: the default) or a download when `download`)."""
    return BenchmarkDataset(
        name=NAME, location=NAME, layout=LAYOUT, lookup_names=(NAME,), metadata_dir=None,
        openers={split: partial(_open_split, split, data_dir, cache_dir, download) for split in SPLITS},
        classnames=NamedList(tuple(FASHION_MNIST_CLASSNAMES), "the built-in Fashion-MNIST class names"),
        templates=NamedList(tuple(FASHION_MNIST_TEMPLATES), "the built-in Fashion-MNIST templates"))


def _open_split(split: str, data_dir: str | Path | None, cache_dir: str | Path | None,
                download: bool) -> BenchmarkSplit:
    source = FashionMnistDataset(split=split, data_dir=data_dir, cache_dir=cache_dir, download=download)
    labels = tuple(int(label) for label in source.labels)
    captions = tuple(tuple(source.captioner.caption(label, sample_index=index, epoch=epoch)
                           for epoch in range(CAPTIONS_PER_IMAGE))
                     for index, label in enumerate(labels))
    return BenchmarkSplit(name=split, images=FashionMnistImages(source), labels=labels, captions=captions,
                          where=f"{NAME} {split} split ({source.images_path})")
