"""CLIP_benchmark's webdataset layout (its `wds/<name>` datasets, e.g. the `clip-benchmark/wds_*`
repositories on the Hugging Face hub):

    DIR/{split}/nshards.txt, DIR/{split}/0.tar .. {n-1}.tar
    DIR/classnames.txt                            one class name per line, line i = class i
    DIR/zeroshot_classification_templates.txt     one template per line, `{c}` = the class name
    DIR/dataset_type.txt                          "retrieval" for retrieval sets (else classification)

A sample's image is its first of `.webp`, `.png`, `.jpg`, `.jpeg` (CLIP_benchmark's order), its
label the integer in `.cls`, its captions the lines of `.txt` (else the `captions` or `caption` of
its `.json`, one caption or a list, `caption_lists.py`). A split without `nshards.txt` is its
`*.tar` files in numeric order. `dataset_type.txt` saying "retrieval" makes the set retrieval-only
as CLIP_benchmark reads it; "multilabel" sets (`.npy` labels) are not supported.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from PIL import Image

from cliplab.data.benchmark.class_names import CLASSNAMES_FILE, TEMPLATES_FILE, own_list
from cliplab.data.benchmark.dataset import BenchmarkDataset, BenchmarkSplit
from cliplab.data.benchmark.tar_index import TarMember, TarSample, index_tar
from cliplab.data.caption_lists import captions_in_field
from cliplab.data.images import decode_rgb_image
from cliplab.errors import InvalidInputError, MissingInputError

LAYOUT = "clip_benchmark"
IMAGE_EXTENSIONS = ("webp", "png", "jpg", "jpeg")
DATASET_TYPE_FILE = "dataset_type.txt"
NSHARDS_FILE = "nshards.txt"
_SMALL_MEMBERS = ("cls", "txt", "json")


def detect(location: Path) -> bool:
    """A directory with a sub-folder of tar shards (or an `nshards.txt`)."""
    return location.is_dir() and any(
        child.is_dir() and ((child / NSHARDS_FILE).is_file() or any(child.glob("*.tar")))
        for child in location.iterdir())


def names_of(directory: Path) -> tuple[str, tuple[str, ...]]:
    """(result name, built-in lookup names) of a directory: `wds_vtab-cifar10` ->
    ("wds/vtab/cifar10", ("wds/vtab/cifar10", "vtab/cifar10", "cifar10")), as the hub's repository
    names spell CLIP_benchmark's dataset names."""
    base = directory.resolve().name
    short = base[len("wds_"):] if base.startswith("wds_") else base
    if short.startswith("vtab-"):
        short = "vtab/" + short[len("vtab-"):]
    name = f"wds/{short}"
    parts = name.split("/")
    return name, tuple("/".join(parts[index:]) for index in range(len(parts)))


def shard_paths(split_dir: Path) -> list[Path]:
    """The shards of a split: `0.tar .. {n-1}.tar` from `nshards.txt`, else its `*.tar` files in
    numeric order of their names."""
    count_file = split_dir / NSHARDS_FILE
    if count_file.is_file():
        text = count_file.read_text(encoding="utf-8").strip()
        if not text.isdigit() or int(text) < 1:
            raise InvalidInputError(f"{count_file} must hold the number of shards (>= 1), got {text!r}")
        paths = [split_dir / f"{index}.tar" for index in range(int(text))]
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise MissingInputError(f"{count_file} lists {len(paths)} shards but {missing[0]} does not exist"
                                    + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        return paths
    paths = sorted(split_dir.glob("*.tar"), key=lambda path: (not path.stem.isdigit(),
                                                               int(path.stem) if path.stem.isdigit() else 0, path.name))
    if not paths:
        raise InvalidInputError(f"{split_dir} holds no *.tar shards")
    return paths


@dataclass(frozen=True)
class TarImages:
    """The images of a split's samples, read from their shards by offset."""

    members: tuple[TarMember, ...]
    sources: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.members)

    def read(self, index: int) -> Image.Image:
        return decode_rgb_image(io.BytesIO(self.members[index].read()), self.sources[index])

    def source(self, index: int) -> str:
        return self.sources[index]


def open_dataset(location: Path, *, name: str | None = None) -> BenchmarkDataset:
    """The dataset in directory `location` (layout: module docstring); name: what results call it."""
    # CLIP_benchmark's task kind (its dataset_type.txt), not a cliplab `data.dataset_type`
    task_kind = "classification"
    type_file = location / DATASET_TYPE_FILE
    if type_file.is_file():
        task_kind = type_file.read_text(encoding="utf-8").strip().lower() or "classification"
    if task_kind == "multilabel":
        raise InvalidInputError(f"{type_file}: multilabel datasets (.npy labels) are not supported")
    derived, lookup = names_of(location)
    splits = sorted(child.name for child in location.iterdir()
                    if child.is_dir() and ((child / NSHARDS_FILE).is_file() or any(child.glob("*.tar"))))
    retrieval_only = task_kind == "retrieval"
    return BenchmarkDataset(
        name=name or derived, location=str(location), layout=LAYOUT, lookup_names=lookup, metadata_dir=location,
        openers={split: partial(_open_split, location / split, split, retrieval_only) for split in splits},
        classnames=None if retrieval_only else own_list(location, CLASSNAMES_FILE, "class names"),
        templates=None if retrieval_only else own_list(location, TEMPLATES_FILE, "templates"),
        retrieval_only=retrieval_only)


def _open_split(split_dir: Path, split: str, retrieval_only: bool) -> BenchmarkSplit:
    members, sources, labels, captions = [], [], [], []
    for shard in shard_paths(split_dir):
        for sample in index_tar(shard, read_extensions=_SMALL_MEMBERS):
            source = f"{shard}:{sample.key}"
            image = next((sample.members[ext] for ext in IMAGE_EXTENSIONS if ext in sample.members), None)
            if image is None:
                raise InvalidInputError(f"{source}: no image (.{', .'.join(IMAGE_EXTENSIONS)}) in the sample")
            members.append(image)
            sources.append(source)
            labels.append(None if retrieval_only else _label(sample, source))
            captions.append(_captions(sample, source))
    return BenchmarkSplit(
        name=split, images=TarImages(tuple(members), tuple(sources)),
        labels=_all_or_none(labels, "labels (.cls)", split_dir),
        captions=_all_or_none(captions, "captions (.txt)", split_dir), where=str(split_dir))


def _label(sample: TarSample, source: str) -> int | None:
    if "cls" not in sample.contents:
        return None
    text = sample.contents["cls"].decode("utf-8", errors="replace").strip()
    try:
        return int(text)
    except ValueError:
        raise InvalidInputError(f"{source}.cls: expected an integer class index, got {text!r}") from None


def _captions(sample: TarSample, source: str) -> tuple[str, ...] | None:
    if "txt" in sample.contents:
        return tuple(sample.contents["txt"].decode("utf-8", errors="replace").splitlines())
    if "json" in sample.contents:
        try:
            metadata = json.loads(sample.contents["json"])
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise InvalidInputError(f"{source}.json: not valid JSON ({error})") from None
        for key in ("captions", "caption"):
            if isinstance(metadata, dict) and key in metadata:
                return captions_in_field(metadata[key], where=f"{source}.json key {key!r}")
    return None


def _all_or_none(values: list, what: str, split_dir: Path):
    """The values when every sample has one, None when none has; a mix names the split."""
    present = sum(value is not None for value in values)
    if present == 0:
        return None
    if present != len(values):
        raise InvalidInputError(f"{split_dir}: {present} of {len(values)} samples have {what}; expected all or none")
    return tuple(values)
