"""Model configuration: keyword-only dataclasses, validated on construction, round-tripped via dicts.

A `ModelConfig` is plain data (the JSON files in `models/configs/` are `ModelConfig.to_dict()`
output); `create_model` in `registry.py` turns one into a module. Overrides use one scheme, see
`apply_overrides`.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

from cliplab.data.transforms import PreprocessConfig
from cliplab.errors import InvalidInputError
from cliplab.models.families import DEFAULT_KINDS, check_tower_config, tower_family
from cliplab.models.tower_configs import (DECODER_LAYOUTS, DecoderConfig, TextConfig, VisionConfig, check_choice,
                                          check_heads, check_positive_int)

__all__ = ["DECODER_LAYOUTS", "MODEL_KINDS", "DecoderConfig", "ModelConfig", "TextConfig", "VisionConfig",
           "apply_overrides", "read_json_object"]

MODEL_KINDS = ("clip", "siglip", "coca")


def _from_dict(cls, values: Any, path: str):
    """Build dataclass `cls` from `values`, naming `path` and the valid keys on unknown keys."""
    if not isinstance(values, dict):
        raise ValueError(f"{path} must be a dict, got {type(values).__name__}")
    known = [field.name for field in fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        where = f"{path}." if path else ""
        raise ValueError(f"unknown config keys {[where + key for key in unknown]}; "
                         f"valid keys{' of ' + path if path else ''}: {known}")
    required = [field.name for field in fields(cls)
                if field.default is MISSING and field.default_factory is MISSING]
    missing = [name for name in required if name not in values]
    if missing:
        where = f"{path}." if path else ""
        raise ValueError(f"config is missing required keys {[where + name for name in missing]}")
    return cls(**values)


@dataclass(kw_only=True)
class ModelConfig:
    """A whole model: kind ("clip", "siglip", "coca"), shared latent size, towers, preprocessing.

    vision / text: the config of a registered tower family of that side (`cliplab.models.families`;
    `VisionConfig` and `TextConfig` for cliplab's own towers), chosen by its `kind`.

    init_logit_scale / init_logit_bias: initial values of the learned (log) temperature and bias;
    None picks the kind's default: clip/coca log(1/0.07) and no bias, siglip log(10) and -10.
    """

    kind: str = "clip"
    embed_dim: int
    vision: Any
    text: Any
    decoder: DecoderConfig | None = None
    preprocess: PreprocessConfig | None = None
    init_logit_scale: float | None = None
    init_logit_bias: float | None = None

    def __post_init__(self) -> None:
        check_choice("kind", self.kind, MODEL_KINDS)
        check_positive_int("embed_dim", self.embed_dim)
        check_tower_config("vision", self.vision)
        check_tower_config("text", self.text)
        for name, width in (("vision", self.vision.output_width), ("text", self.text.width)):
            if getattr(self, name).projection == "none" and width != self.embed_dim:
                raise ValueError(f"{name}.projection='none' uses the tower's output as the embedding: "
                                 f"its width ({width}) must equal embed_dim ({self.embed_dim})")
        if self.kind == "coca":
            if not isinstance(self.decoder, DecoderConfig):
                raise ValueError("kind='coca' needs decoder: DecoderConfig, got "
                                 f"{type(self.decoder).__name__}")
            check_heads("decoder", self.text.width, self.decoder.heads)
            # open_clip's coca_roberta runs its decoder on a bidirectional Hugging Face tower, whose
            # hidden states have seen the next tokens; it is built as open_clip builds it.
            if isinstance(self.text, TextConfig) and not self.text.causal:
                raise ValueError("kind='coca' needs text.causal=True: the decoder predicts each "
                                 "next token from the text tower's hidden states")
        elif self.decoder is not None:
            raise ValueError(f"decoder applies to kind='coca' only, got kind={self.kind!r}")
        if self.preprocess is None:
            self.preprocess = PreprocessConfig(image_size=self.vision.image_size)
        if not isinstance(self.preprocess, PreprocessConfig):
            raise ValueError(f"preprocess must be a PreprocessConfig, got {type(self.preprocess).__name__}")
        if self.preprocess.image_size != self.vision.image_size:
            raise InvalidInputError(f"preprocess.image_size ({self.preprocess.image_size}) must equal "
                                    f"vision.image_size ({self.vision.image_size}): the images are made the "
                                    "size the tower takes; set only vision.image_size (the preprocessing "
                                    "follows it), or both to the same size")
        if self.init_logit_scale is None:
            self.init_logit_scale = math.log(10.0) if self.kind == "siglip" else math.log(1 / 0.07)
        if self.init_logit_bias is None and self.kind == "siglip":
            self.init_logit_bias = -10.0
        if self.init_logit_bias is not None and self.kind != "siglip":
            raise ValueError(f"init_logit_bias applies to kind='siglip' only, got kind={self.kind!r}")

    @property
    def decoder_vocab_size(self) -> int | None:
        """The ids CoCa's decoder predicts: decoder.vocab_size, else the text tower's (None without
        a decoder)."""
        if self.decoder is None:
            return None
        return self.decoder.vocab_size if self.decoder.vocab_size is not None else self.text.vocab_size

    def to_dict(self) -> dict:
        """Plain nested dict (JSON-serialisable); `ModelConfig.from_dict` inverts it."""
        return _lists_for_tuples(asdict(self))

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """Inverse of `to_dict`. A missing preprocess.image_size defaults to vision.image_size."""
        if not isinstance(values, dict):
            raise ValueError(f"model config must be a dict, got {type(values).__name__}")
        values = copy.deepcopy(values)
        for key in ("vision", "text"):
            if key not in values:
                raise ValueError(f"model config is missing the '{key}' section")
        vision = _tower_from_dict("vision", values.pop("vision"))
        text = _tower_from_dict("text", values.pop("text"))
        decoder_values = values.pop("decoder", None)
        decoder = None if decoder_values is None else _from_dict(DecoderConfig, decoder_values, "decoder")
        preprocess_values = values.pop("preprocess", None) or {}
        preprocess_values.setdefault("image_size", vision.image_size)
        preprocess = _from_dict(PreprocessConfig, preprocess_values, "preprocess")
        top = _from_dict(_TopLevelKeys, values, "")
        return cls(vision=vision, text=text, decoder=decoder, preprocess=preprocess,
                   **{field.name: getattr(top, field.name) for field in fields(_TopLevelKeys)})


def _tower_from_dict(side: str, values: Any):
    """The config of the tower family `values["kind"]` names (a section without one: the side's
    first family, as configs written before the registry)."""
    if not isinstance(values, dict):
        raise ValueError(f"{side} must be a dict, got {type(values).__name__}")
    family = tower_family(side, values.get("kind", DEFAULT_KINDS[side]))
    return _from_dict(family.config, values, side)


@dataclass(kw_only=True)
class _TopLevelKeys:
    """The scalar keys of ModelConfig, so from_dict can reject unknown ones by name."""

    kind: str = "clip"
    embed_dim: int
    init_logit_scale: float | None = None
    init_logit_bias: float | None = None


def _lists_for_tuples(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _lists_for_tuples(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_lists_for_tuples(item) for item in value]
    return value


def read_json_object(path: str | os.PathLike, described_as: str) -> dict:
    """The JSON object in the file at `path`; ValueError naming `described_as` (e.g. "model config
    '/x/config.json'") when the file is not JSON or holds something other than an object."""
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
    except (ValueError, RecursionError) as error:  # ValueError: not JSON, or not UTF-8 text
        raise ValueError(f"{described_as} is not valid JSON: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"{described_as} must hold a JSON object, got {type(values).__name__}")
    return values


def apply_overrides(values: dict, overrides: dict[str, Any]) -> dict:
    """Return a copy of config dict `values` with `overrides` applied.

    Each override key is a top-level key ("embed_dim") or a dotted path ("vision.width",
    "preprocess.mean"); a dict value is merged into the section it names instead of replacing it
    (`vision={"width": 32}` changes only the width). Keys are checked when the result is turned
    into a ModelConfig, which names any unknown key. The preprocessing follows the tower: a new
    vision.image_size sets preprocess.image_size too, unless the overrides set that themselves.
    """
    merged = copy.deepcopy(values)
    for dotted_key, value in overrides.items():
        if not isinstance(dotted_key, str) or not dotted_key or "" in dotted_key.split("."):
            raise ValueError(f"override keys must be names or dotted paths like 'vision.width', "
                             f"got {dotted_key!r}")
        *parents, leaf = dotted_key.split(".")
        section = merged
        for position, parent in enumerate(parents):
            child = section.get(parent)
            if child is None:
                child = section[parent] = {}
            if not isinstance(child, dict):
                raise ValueError(f"override {dotted_key!r}: "
                                 f"'{'.'.join(parents[:position + 1])}' is not a config section")
            section = child
        if isinstance(value, dict) and isinstance(section.get(leaf), dict):
            section[leaf] = _deep_merge(section[leaf], value)
        else:
            section[leaf] = copy.deepcopy(value)
    if _overrides_key(overrides, "vision", "image_size") and not _overrides_key(overrides, "preprocess", "image_size") \
            and isinstance(merged.get("preprocess"), dict) and isinstance(merged.get("vision"), dict):
        merged["preprocess"]["image_size"] = copy.deepcopy(merged["vision"].get("image_size"))
    return merged


def _overrides_key(overrides: dict[str, Any], section: str, key: str) -> bool:
    """Whether `overrides` set `section.key`, dotted or as a section dict."""
    whole = overrides.get(section)
    return f"{section}.{key}" in overrides or (isinstance(whole, dict) and key in whole)


def _deep_merge(base: dict, update: dict) -> dict:
    result = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result
