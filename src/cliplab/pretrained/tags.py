"""open_clip's pretrained tags: (model name, tag) -> where the weights are and how they were trained.

    cliplab.list_pretrained()                        # [("RN50", "openai"), ..., ("ViT-B-32", "laion2b_s34b_b79k"), ...]
    cliplab.list_pretrained_tags_by_model("ViT-B-32")   # ["openai", "laion400m_e31", ...]
    model, _, preprocess = cliplab.create_model_and_transforms("ViT-B-32", pretrained="laion2b_s34b_b79k")

The table is open_clip 3.3.0's (`open_clip_pretrained.json`, written by
`scripts/write_open_clip_pretrained.py`): per tag, the Hugging Face repository (and file) holding
the weights, the preprocessing they were trained with and whether they need QuickGELU. Tags are
matched as open_clip matches them (lower case, '-' read as '_'; '/' in a model name read as '-').
Loading a tag (`cliplab.pretrained.loaders.read_pretrained_tag`) reads the weights through the
Hugging Face cache (`hf_cache`): cached files work offline, others are downloaded, and neither is one
line naming the repository and the cache. The architecture is the model name's, as in open_clip, so
a tag of an architecture cliplab does not build is refused before anything is downloaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cliplab.suggestions import closest_names

TABLE_FILE = Path(__file__).resolve().parent / "open_clip_pretrained.json"
# open_clip's lookup order for a hub repository's weights when the tag names no file.
DEFAULT_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


@dataclass(frozen=True)
class PretrainedTag:
    """One row of the table. hf_hub: "org/name/" (the repository's default weights) or
    "org/name/file"; mean/std/interpolation/resize_mode: the preprocessing the weights were trained
    with; quick_gelu: whether they were trained with QuickGELU activations."""

    model: str
    tag: str
    hf_hub: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str
    resize_mode: str
    quick_gelu: bool

    @property
    def repo_id(self) -> str:
        return "/".join(self.hf_hub.split("/")[:2])

    @property
    def weight_files(self) -> tuple[str, ...]:
        """The repository files to read the weights from, first found wins: a named `.bin` or `.pth`
        is preceded by its `.safetensors` twin, as open_clip looks them up."""
        filename = self.hf_hub.split("/", 2)[2]
        if not filename:
            return DEFAULT_WEIGHT_FILES
        stem, _, suffix = filename.rpartition(".")
        return (f"{stem}.safetensors", filename) if suffix in ("bin", "pth") else (filename,)

    @property
    def preprocess_cfg(self) -> dict:
        """The preprocessing in open_clip's `preprocess_cfg` spelling (without the size)."""
        return {"mean": list(self.mean), "std": list(self.std), "interpolation": self.interpolation,
                "resize_mode": self.resize_mode}


@lru_cache(maxsize=1)
def _table() -> dict[str, dict[str, PretrainedTag]]:
    values = json.loads(TABLE_FILE.read_text())["pretrained"]
    return {model: {tag: PretrainedTag(model=model, tag=tag, hf_hub=entry["hf_hub"], mean=tuple(entry["mean"]),
                                       std=tuple(entry["std"]), interpolation=entry["interpolation"],
                                       resize_mode=entry["resize_mode"], quick_gelu=entry["quick_gelu"])
                    for tag, entry in tags.items()}
            for model, tags in values.items()}


def clean_tag(tag: str) -> str:
    """A tag as the table spells it (open_clip's rule): lower case, '-' as '_'."""
    return tag.lower().replace("-", "_")


def clean_model_name(name: str) -> str:
    """A model name as the table spells it (open_clip's rule): '/' as '-' ("ViT-B/32" -> "ViT-B-32")."""
    return name.replace("/", "-")


def list_pretrained(as_str: bool = False) -> list[tuple[str, str]] | list[str]:
    """Every (model name, tag) pair, in open_clip's order; "model:tag" strings with `as_str`."""
    pairs = [(model, tag) for model, tags in _table().items() for tag in tags]
    return [f"{model}:{tag}" for model, tag in pairs] if as_str else pairs


def list_pretrained_tags_by_model(model: str) -> list[str]:
    """The tags of model name `model` ([] for a name without any)."""
    return list(_table().get(clean_model_name(model), {}))


def list_pretrained_models_by_tag(tag: str) -> list[str]:
    """The model names that have tag `tag`."""
    return [model for model, tags in _table().items() if clean_tag(tag) in tags]


def find_pretrained_tag(model: str, tag: str) -> PretrainedTag | None:
    """The table's row for (`model`, `tag`), or None when the model has no such tag."""
    return _table().get(clean_model_name(model), {}).get(clean_tag(tag))


def looks_like_a_tag(text: str) -> bool:
    """Whether `text` could be a tag (no tag holds a path separator or a file suffix's dot)."""
    return "/" not in text and "\\" not in text and "." not in text


def describe_tags_of(model: str, wanted: str) -> str:
    """What a message about `wanted`, not a tag of `model`, says about the tags it has: the closest 5."""
    known = list_pretrained_tags_by_model(model)
    if not known:
        return f"{model} has no open_clip pretrained tags (cliplab.list_pretrained() lists every (model, tag))"
    return (f"closest tags of {model}: {', '.join(closest_names(clean_tag(wanted), known))} "
            f"(cliplab.list_pretrained_tags_by_model({model!r}) lists all {len(known)})")
