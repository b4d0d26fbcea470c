"""Image features on disk, by model and dataset split, so a linear probe re-run (another seed, lr,
few-shot k) does not encode the images again.

`ROOT/<key>/<split>.safetensors` holds `features` Float[N, E] (unit rows) and `labels` Long[N];
`ROOT/<key>/about.json` says what the key stands for. The key is a SHA-256 over what changes the
features: the model (the checkpoint path it was read from, with the size and modification time of
each of its files), the precision, the preprocessing, and the split (the dataset's location and
layout, the split's name, every image's source and label). A checkpoint rewritten in place gets a
new key; an image file rewritten in place under the same name does not (pass another root, or
delete the folder). Files are written under a temporary name and renamed, and read with the
checked safetensors reader (`pretrained.weight_files.SafetensorsReader`: nothing unpickled, a bad
header reads as absent). ROOT defaults to `$CLIPLAB_CACHE/benchmark-features`
(`~/.cache/cliplab/benchmark-features`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file

from cliplab.data.benchmark import BenchmarkDataset, BenchmarkSplit
from cliplab.data.fashion_mnist_files import CACHE_ENV_VAR
from cliplab.errors import UserError
from cliplab.eval.linear_probe import Features
from cliplab.pretrained.weight_files import SafetensorsReader

ABOUT_FILE = "about.json"


def default_root() -> Path:
    root = os.environ.get(CACHE_ENV_VAR)
    return (Path(root).expanduser() if root else Path.home() / ".cache" / "cliplab") / "benchmark-features"


def checkpoint_fingerprint(path: Path) -> list:
    """[path, [relative file, size, mtime_ns]...] of a checkpoint file or directory."""
    path = path.resolve()
    files = [path] if path.is_file() else sorted(child for child in path.rglob("*") if child.is_file())
    return [str(path)] + [[str(file.relative_to(path)) if file != path else "", file.stat().st_size,
                           file.stat().st_mtime_ns] for file in files]


@dataclass(frozen=True)
class FeatureCache:
    """Cached features of one model (`model_key`: what identifies its features, JSON-ready)."""

    root: Path
    model_key: dict

    def directory(self, dataset: BenchmarkDataset, split: BenchmarkSplit) -> Path:
        identity = {"model": self.model_key, "dataset": [dataset.location, dataset.layout], "split": split.name,
                    "sources": hashlib.sha256("\n".join(split.images.source(index) for index in range(len(split)))
                                              .encode("utf-8")).hexdigest(),
                    "labels": hashlib.sha256(json.dumps(split.labels).encode("utf-8")).hexdigest()}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode("utf-8")).hexdigest()[:32]
        return self.root / digest

    def load(self, dataset: BenchmarkDataset, split: BenchmarkSplit) -> Features | None:
        """The cached features of `split`, or None (absent, unreadable, or of another size)."""
        file = self.directory(dataset, split) / f"{split.name}.safetensors"
        if not file.is_file():
            return None
        try:
            reader = SafetensorsReader(file)  # its header checked before anything is read
            shapes = reader.shapes
            if set(shapes) != {"features", "labels"} or shapes["features"].dim() != 2 \
                    or shapes["features"].shape[0] != len(split) or tuple(shapes["labels"].shape) != (len(split),):
                return None
            return Features(reader.read("features"), reader.read("labels"))
        except UserError:
            return None

    def save(self, dataset: BenchmarkDataset, split: BenchmarkSplit, features: Features) -> Path:
        directory = self.directory(dataset, split)
        directory.mkdir(parents=True, exist_ok=True)
        about = directory / ABOUT_FILE
        if not about.is_file():
            about.write_text(json.dumps({"model": self.model_key, "dataset": dataset.location,
                                         "layout": dataset.layout}, indent=2) + "\n")
        file = directory / f"{split.name}.safetensors"
        temporary = directory / f".{split.name}.safetensors.part"
        save_file({"features": features.features.float().contiguous(), "labels": features.labels.long().contiguous()},
                  str(temporary))
        os.replace(temporary, file)
        return file
