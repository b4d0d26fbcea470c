"""How timm 1.0.31 builds the image towers of open_clip's built-in configs, as data.

`timm_model_args.json` (written by `scripts/write_timm_model_args.py` from timm itself) holds, for
every `vision_cfg.timm_model_name` of open_clip 3.3.0's configs: the timm class that builds it, the
keyword arguments timm's model function passes to that class (`kwargs`, timm's pretrained-config
defaults such as `img_size` and `num_classes` included), the preprocessing facts of its pretrained
config (`pretrained_cfg`: input_size, mean, std, interpolation, crop_pct, ...), and the open_clip
configs that name it; for every class, its constructor's defaults. Classes and functions appear by
qualified name, `functools.partial`s as {"partial", "args", "keywords"}, module instances as
{"instance", "repr"}.

cliplab never imports timm: a tower family reads these facts and builds its own modules in timm's
parameter layout. `timm_family_kind` says which family builds a timm model.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path

TIMM_MODEL_ARGS_FILE = Path(__file__).resolve().parent / "timm_model_args.json"

# The tower family that builds a timm model, by its timm class; a VisionTransformer whose patch
# embedding is a hybrid one is decided by that embedding's backbone instead.
TIMM_CLASS_FAMILIES = {
    "VisionTransformer": "timm_vit",
    "VisionTransformerRelPos": "timm_vit_relpos",
    "Eva": "timm_eva",
    "ConvNeXt": "timm_convnext",
    "FastVit": "timm_fastvit",
    "SwinTransformer": "timm_swin",
}
HYBRID_BACKBONE_FAMILIES = {"timm.models.vitamin.MbConvStages": "timm_vitamin"}


@lru_cache(maxsize=1)
def _document() -> dict:
    with open(TIMM_MODEL_ARGS_FILE) as handle:
        return json.load(handle)


def timm_model_names() -> list[str]:
    """The timm models of open_clip's built-in configs."""
    return list(_document()["models"])


def timm_model(name: str) -> dict | None:
    """The entry of timm model `name` ({"class", "kwargs", "pretrained_cfg", ...}; a copy), or None
    when it is not one of open_clip's."""
    entry = _document()["models"].get(name)
    return copy.deepcopy(entry) if entry is not None else None


def timm_constructor_args(name: str) -> dict:
    """Every argument timm's class gets for model `name`: its constructor's defaults updated with
    the model's kwargs (a copy); KeyError when `name` is not one of open_clip's."""
    entry = _document()["models"][name]
    return copy.deepcopy({**_document()["classes"][entry["class"]]["defaults"], **entry["kwargs"]})


def timm_family_kind(name: str | None) -> str | None:
    """The tower family that builds timm model `name` (e.g. "timm_eva"), or None when `name` is
    not one of open_clip's timm models."""
    entry = _document()["models"].get(name) if name else None
    if entry is None:
        return None
    embed_layer = entry["kwargs"].get("embed_layer")
    if isinstance(embed_layer, dict):
        backbone = embed_layer.get("keywords", {}).get("backbone", {})
        kind = HYBRID_BACKBONE_FAMILIES.get(backbone.get("instance") if isinstance(backbone, dict) else None)
        if kind is not None:
            return kind
    return TIMM_CLASS_FAMILIES[entry["class"]]
