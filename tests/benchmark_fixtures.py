"""Tiny benchmark datasets built in the tests: seeded random RGB images in every layout
`cliplab.data.benchmark` reads, and a tiny CLIP to evaluate on them."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cliplab.data.benchmark.dataset import BenchmarkSplit

CLASSNAMES = ("red square", "green disc", "blue line", "grey cloud", "white sky", "black cat")
TEMPLATES = ("a photo of a {c}.", "a drawing of the {c}.")
SIZE = 12


def random_images(count: int, seed: int) -> list[Image.Image]:
    generator = np.random.default_rng(seed)
    return [Image.fromarray(generator.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), mode="RGB")
            for _ in range(count)]


def labels_for(count: int, seed: int, num_classes: int = len(CLASSNAMES)) -> list[int]:
    """Every class at least once (for counts >= num_classes), then seeded draws."""
    generator = np.random.default_rng(seed + 1000)
    return [index % num_classes if index < num_classes else int(generator.integers(num_classes))
            for index in range(count)]


def captions_for(labels: list[int], per_image: int = 2) -> list[list[str]]:
    """`per_image` captions per image, some shared between images of a class (ties in the scores)."""
    return [[f"a {CLASSNAMES[label]}", f"picture {index} of a {CLASSNAMES[label]}"][:per_image]
            for index, label in enumerate(labels)]


@dataclass(frozen=True)
class MemoryImages:
    images: tuple[Image.Image, ...]

    def __len__(self) -> int:
        return len(self.images)

    def read(self, index: int) -> Image.Image:
        return self.images[index].copy()

    def source(self, index: int) -> str:
        return f"memory/{index}"


def memory_split(name: str, count: int, seed: int, *, labels: bool = True, captions: bool = True) -> BenchmarkSplit:
    label_list = labels_for(count, seed)
    return BenchmarkSplit(name=name, images=MemoryImages(tuple(random_images(count, seed))),
                          labels=tuple(label_list) if labels else None,
                          captions=tuple(tuple(texts) for texts in captions_for(label_list)) if captions else None,
                          where=f"memory {name}")


def write_image_folder(root: Path, splits: dict[str, int], seed: int = 0) -> dict[str, tuple[list[Path], list[int]]]:
    """root/{split}/<class folder>/<png> for each split (count images); -> {split: (paths, labels)} in
    torchvision's order."""
    written = {}
    for offset, (split, count) in enumerate(splits.items()):
        images, labels = random_images(count, seed + offset), labels_for(count, seed + offset)
        for index, (image, label) in enumerate(zip(images, labels)):
            folder = root / split / CLASSNAMES[label].replace(" ", "_")
            folder.mkdir(parents=True, exist_ok=True)
            image.save(folder / f"img_{index:03d}.png")
        entries = sorted((CLASSNAMES[label].replace(" ", "_"), f"img_{index:03d}.png", label)
                         for index, label in enumerate(labels))
        written[split] = ([root / split / folder / name for folder, name, _ in entries],
                          [label for _, _, label in entries])
    return written


def write_manifest(path: Path, images: list[Image.Image], *, labels: list[int] | None = None,
                   captions: list[list[str]] | None = None, separator: str = "\t") -> Path:
    """A manifest of PNGs beside it: columns filepath, label, title (a JSON list when several)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["filepath"] + (["label"] if labels is not None else []) + (["title"] if captions is not None else [])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=separator)
        writer.writerow(columns)
        for index, image in enumerate(images):
            name = f"{path.stem}_{index:03d}.png"
            image.save(path.parent / name)
            row = [name]
            if labels is not None:
                row.append(labels[index])
            if captions is not None:
                row.append(json.dumps(captions[index]) if len(captions[index]) > 1 else captions[index][0])
            writer.writerow(row)
    return path


def preprocess(image: Image.Image) -> torch.Tensor:
    """Float[3, SIZE, SIZE] in [0, 1], as a model's preprocess would hand it on."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
