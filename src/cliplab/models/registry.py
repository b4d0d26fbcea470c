"""Model registry: configs found by name, models built by kind.

Names: cliplab's own configs (JSON files in `models/configs/`), open_clip's built-in model names
(`open_clip_configs.json`, read by the same converter as an open_clip hub directory's config; the
ones whose tower families are registered, see `cliplab.models.families`: any other of open_clip's
144 names is refused with `UnsupportedArchitectureError` naming the family it needs), and
`register_model` additions.

    create_model("tiny")                                   # a registered name
    create_model("ViT-L-14-quickgelu", device="meta")      # an open_clip name, built without memory
    create_model("path/to/config.json")                    # any ModelConfig JSON
    create_model("tiny", embed_dim=32, **{"vision.width": 64})   # overrides, see apply_overrides
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cliplab.models.clip import CLIP
from cliplab.models.coca import CoCa
from cliplab.errors import InvalidInputError
from cliplab.models.config import ModelConfig, apply_overrides, read_json_object
# initialisers_on_meta is imported from here by its callers (shard_init's users).
from cliplab.models.meta_build import initialisers_on_meta, initialisers_skipped, meta_values_recorded  # noqa: F401
from cliplab.models.open_clip_config import builtin_open_clip_names, known_open_clip_names, open_clip_name_config
from cliplab.suggestions import closest_names

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

MODEL_CLASSES: dict[str, type[CLIP]] = {"clip": CLIP, "siglip": CLIP, "coca": CoCa}

_registered_configs: dict[str, dict] = {}


def _builtin_config_paths() -> dict[str, Path]:
    return {path.stem: path for path in CONFIG_DIR.glob("*.json")}


def list_models() -> list[str]:
    """Names accepted by `create_model`: cliplab's JSON configs, open_clip's built-in names and
    `register_model` additions."""
    return sorted({*_builtin_config_paths(), *builtin_open_clip_names(), *_registered_configs}, key=str.lower)


def register_model(name: str, config: ModelConfig | dict) -> None:
    """Make `config` available to `create_model(name)` for this process (validated now)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")
    values = config.to_dict() if isinstance(config, ModelConfig) else config
    ModelConfig.from_dict(values)
    _registered_configs[name] = json.loads(json.dumps(values))


FILE_METADATA_KEYS = ("format_version",)


class UnknownModelError(InvalidInputError):
    """A model name that is neither registered nor a JSON file; the message names the closest
    names (`closest`, at most 5) and points to `list_models()`."""

    def __init__(self, name: str):
        known = list_models()
        self.name, self.closest = name, closest_names(name, known)
        self.hint = f"closest names: {', '.join(self.closest)} (cliplab.list_models() lists all {len(known)})"
        super().__init__(f"unknown model {name!r}: not a registered name or a JSON file; {self.hint}")

    def __reduce__(self):
        return type(self), (self.name,)


def _config_values(name_or_path: str | Path) -> dict:
    name = str(name_or_path)
    if name in _registered_configs:
        return _registered_configs[name]
    builtin = _builtin_config_paths()
    if name not in builtin and name in known_open_clip_names():
        return open_clip_name_config(name).to_dict()
    path = builtin.get(name, Path(name))
    if not path.is_file():
        raise UnknownModelError(name)
    values = read_json_object(path, f"model config {str(path)!r}")
    # A saved model's config.json also records its file format (see cliplab.model_io); the
    # architecture is everything else.
    return {key: value for key, value in values.items() if key not in FILE_METADATA_KEYS}


def get_model_config(name_or_path: str | Path | ModelConfig, **overrides: Any) -> ModelConfig:
    """The validated ModelConfig for a registered name, a JSON path or a ModelConfig, with overrides."""
    if isinstance(name_or_path, ModelConfig):
        values = name_or_path.to_dict()
    elif isinstance(name_or_path, (str, Path)):
        values = _config_values(name_or_path)
    else:
        raise ValueError(f"name_or_path must be a model name, a JSON path or a ModelConfig, "
                         f"got {type(name_or_path).__name__}")
    return ModelConfig.from_dict(apply_overrides(values, overrides))


def build_model(config: ModelConfig, *, output_dict: bool = False) -> CLIP:
    """The model for `config` (class chosen by config.kind), freshly initialised, in train mode
    (on the meta device, where there is nothing to initialise, the initialisers are skipped).
    output_dict: what forward returns (open_clip's tuple when False; see CLIP)."""
    if not isinstance(config, ModelConfig):
        raise ValueError(f"config must be a ModelConfig, got {type(config).__name__}")
    skip = torch.empty(0).is_meta and not meta_values_recorded()
    with initialisers_skipped() if skip else contextlib.nullcontext():
        return MODEL_CLASSES[config.kind](config, output_dict=output_dict)


def create_model(name_or_path: str | Path | ModelConfig, *, output_dict: bool = False,
                 device: str | torch.device | None = None, **overrides: Any) -> nn.Module:
    """Build a model by registered name, JSON path or ModelConfig, with keyword overrides.

    output_dict: forward returns a dict (True) or open_clip's tuple (False, the default).
    device: build the parameters there (None: the current default device). "meta" allocates no
    memory: any size can be inspected (`sum(p.numel() for p in model.parameters())`).

    Overrides: a top-level key (`embed_dim=32`), a dotted path (`**{"vision.width": 64}`), or a
    section given as a dict merged into it (`text={"layers": 2}`).
    """
    config = get_model_config(name_or_path, **overrides)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        return build_model(config, output_dict=output_dict)
