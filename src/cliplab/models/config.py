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

MODEL_KINDS = ("clip", "siglip", "coca")
VISION_KINDS = ("vit", "conv")
VISION_POOLS = ("cls", "mean")
TEXT_POOLS = ("eot", "cls", "mean")
TEXT_POSITIONS = ("learned", "rotary")


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_probability(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_heads(prefix: str, width: int, heads: int) -> None:
    _check_positive_int(f"{prefix}.heads", heads)
    if width % heads:
        raise ValueError(f"{prefix}.width ({width}) must be divisible by {prefix}.heads ({heads})")


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
class VisionConfig:
    """Image tower.

    kind: "vit" (patch embedding + transformer) or "conv" (small conv net for tiny images).
    image_size: input side S (square). width: channels of the tower's output tokens.
    layers: transformer blocks (vit) or stride-2 stages (conv; output grid S / 2**layers).
    heads, patch_size, mlp_ratio, pool ("cls" token or "mean" over patches), patch_dropout (fraction
    of patches dropped per sample in training) apply to the ViT only. dropout: residual-branch
    dropout in the ViT blocks.
    """

    kind: str = "vit"
    image_size: int
    width: int
    layers: int
    heads: int = 8
    patch_size: int = 16
    mlp_ratio: float = 4.0
    pool: str = "cls"
    patch_dropout: float = 0.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_choice("vision.kind", self.kind, VISION_KINDS)
        _check_positive_int("vision.image_size", self.image_size)
        _check_positive_int("vision.width", self.width)
        _check_positive_int("vision.layers", self.layers)
        _check_probability("vision.dropout", self.dropout)
        if self.kind == "vit":
            _check_heads("vision", self.width, self.heads)
            _check_positive_int("vision.patch_size", self.patch_size)
            if self.image_size % self.patch_size:
                raise ValueError(f"vision.image_size ({self.image_size}) must be divisible by "
                                 f"vision.patch_size ({self.patch_size})")
            _check_choice("vision.pool", self.pool, VISION_POOLS)
            _check_probability("vision.patch_dropout", self.patch_dropout)
            if not isinstance(self.mlp_ratio, (int, float)) or self.mlp_ratio <= 0:
                raise ValueError(f"vision.mlp_ratio must be a positive number, got {self.mlp_ratio!r}")
        else:
            if self.patch_dropout:
                raise ValueError("vision.patch_dropout applies to kind='vit' only; "
                                 f"got {self.patch_dropout} with kind='conv'")
            if self.width % 2 ** self.layers:
                raise ValueError(f"vision.width ({self.width}) must be divisible by 2**vision.layers "
                                 f"({2 ** self.layers}) for kind='conv' (channels halve per stage)")
            if self.image_size < 2 ** self.layers:
                raise ValueError(f"vision.image_size ({self.image_size}) must be >= 2**vision.layers "
                                 f"({2 ** self.layers}) for kind='conv'")

    @property
    def grid_size(self) -> int:
        """Side of the output token grid: patches per side (vit) or cells per side (conv)."""
        if self.kind == "vit":
            return self.image_size // self.patch_size
        return math.ceil(self.image_size / 2 ** self.layers)


@dataclass(kw_only=True)
class TextConfig:
    """Text tower.

    context_length: tokens per caption T. vocab_size: rows of the token embedding.
    position: "learned" absolute embedding or "rotary" (RoPE in every attention layer).
    pool: "eot" (hidden state at the last non-pad token), "cls" (a learned token appended after the
    T tokens) or "mean" (mean over non-pad tokens). causal: causal self-attention; padding is always
    masked out of the keys. pad_id: the id whose positions count as padding (right padding).
    """

    context_length: int
    vocab_size: int
    width: int
    layers: int
    heads: int = 8
    mlp_ratio: float = 4.0
    position: str = "learned"
    pool: str = "eot"
    causal: bool = True
    pad_id: int = 0
    dropout: float = 0.0
    rotary_base: float = 10000.0

    def __post_init__(self) -> None:
        _check_positive_int("text.context_length", self.context_length)
        _check_positive_int("text.vocab_size", self.vocab_size)
        _check_positive_int("text.width", self.width)
        _check_positive_int("text.layers", self.layers)
        _check_heads("text", self.width, self.heads)
        if not isinstance(self.mlp_ratio, (int, float)) or self.mlp_ratio <= 0:
            raise ValueError(f"text.mlp_ratio must be a positive number, got {self.mlp_ratio!r}")
        _check_choice("text.position", self.position, TEXT_POSITIONS)
        _check_choice("text.pool", self.pool, TEXT_POOLS)
        if not isinstance(self.causal, bool):
            raise ValueError(f"text.causal must be a bool, got {self.causal!r}")
        if not isinstance(self.pad_id, int) or not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"text.pad_id must be an int in [0, vocab_size={self.vocab_size}), "
                             f"got {self.pad_id!r}")
        _check_probability("text.dropout", self.dropout)
        if self.position == "rotary" and (self.width // self.heads) % 2:
            raise ValueError(f"text.position='rotary' needs an even head dimension, got "
                             f"width/heads = {self.width}/{self.heads}")
        if not isinstance(self.rotary_base, (int, float)) or self.rotary_base <= 1:
            raise ValueError(f"text.rotary_base must be a number > 1, got {self.rotary_base!r}")


@dataclass(kw_only=True)
class DecoderConfig:
    """CoCa multimodal decoder: blocks of causal self-attention + cross-attention to image tokens.

    Its width is the text tower's width (it continues the text tower's hidden states).
    """

    layers: int
    heads: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_positive_int("decoder.layers", self.layers)
        _check_positive_int("decoder.heads", self.heads)
        if not isinstance(self.mlp_ratio, (int, float)) or self.mlp_ratio <= 0:
            raise ValueError(f"decoder.mlp_ratio must be a positive number, got {self.mlp_ratio!r}")
        _check_probability("decoder.dropout", self.dropout)


@dataclass(kw_only=True)
class ModelConfig:
    """A whole model: kind ("clip", "siglip", "coca"), shared latent size, towers, preprocessing.

    init_logit_scale / init_logit_bias: initial values of the learned (log) temperature and bias;
    None picks the kind's default: clip/coca log(1/0.07) and no bias, siglip log(10) and -10.
    """

    kind: str = "clip"
    embed_dim: int
    vision: VisionConfig
    text: TextConfig
    decoder: DecoderConfig | None = None
    preprocess: PreprocessConfig | None = None
    init_logit_scale: float | None = None
    init_logit_bias: float | None = None

    def __post_init__(self) -> None:
        _check_choice("kind", self.kind, MODEL_KINDS)
        _check_positive_int("embed_dim", self.embed_dim)
        for name, expected in (("vision", VisionConfig), ("text", TextConfig)):
            if not isinstance(getattr(self, name), expected):
                raise ValueError(f"{name} must be a {expected.__name__}, "
                                 f"got {type(getattr(self, name)).__name__}")
        if self.kind == "coca":
            if not isinstance(self.decoder, DecoderConfig):
                raise ValueError("kind='coca' needs decoder: DecoderConfig, got "
                                 f"{type(self.decoder).__name__}")
            _check_heads("decoder", self.text.width, self.decoder.heads)
            if not self.text.causal:
                raise ValueError("kind='coca' needs text.causal=True: the decoder predicts each "
                                 "next token from the text tower's hidden states")
        elif self.decoder is not None:
            raise ValueError(f"decoder applies to kind='coca' only, got kind={self.kind!r}")
        if self.preprocess is None:
            self.preprocess = PreprocessConfig(image_size=self.vision.image_size)
        if not isinstance(self.preprocess, PreprocessConfig):
            raise ValueError(f"preprocess must be a PreprocessConfig, got {type(self.preprocess).__name__}")
        if self.preprocess.image_size != self.vision.image_size:
            raise ValueError(f"preprocess.image_size ({self.preprocess.image_size}) must equal "
                             f"vision.image_size ({self.vision.image_size})")
        if self.init_logit_scale is None:
            self.init_logit_scale = math.log(10.0) if self.kind == "siglip" else math.log(1 / 0.07)
        if self.init_logit_bias is None and self.kind == "siglip":
            self.init_logit_bias = -10.0
        if self.init_logit_bias is not None and self.kind != "siglip":
            raise ValueError(f"init_logit_bias applies to kind='siglip' only, got kind={self.kind!r}")

    def to_dict(self) -> dict:
        """Plain nested dict (JSON-serialisable); `ModelConfig.from_dict` inverts it."""
        values = asdict(self)
        for key in ("mean", "std", "train_crop_scale", "train_crop_ratio"):
            values["preprocess"][key] = list(values["preprocess"][key])
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        """Inverse of `to_dict`. A missing preprocess.image_size defaults to vision.image_size."""
        if not isinstance(values, dict):
            raise ValueError(f"model config must be a dict, got {type(values).__name__}")
        values = copy.deepcopy(values)
        for key in ("vision", "text"):
            if key not in values:
                raise ValueError(f"model config is missing the '{key}' section")
        vision = _from_dict(VisionConfig, values.pop("vision"), "vision")
        text = _from_dict(TextConfig, values.pop("text"), "text")
        decoder_values = values.pop("decoder", None)
        decoder = None if decoder_values is None else _from_dict(DecoderConfig, decoder_values, "decoder")
        preprocess_values = values.pop("preprocess", None) or {}
        preprocess_values.setdefault("image_size", vision.image_size)
        preprocess = _from_dict(PreprocessConfig, preprocess_values, "preprocess")
        top = _from_dict(_TopLevelKeys, values, "")
        return cls(vision=vision, text=text, decoder=decoder, preprocess=preprocess,
                   **{field.name: getattr(top, field.name) for field in fields(_TopLevelKeys)})


@dataclass(kw_only=True)
class _TopLevelKeys:
    """The scalar keys of ModelConfig, so from_dict can reject unknown ones by name."""

    kind: str = "clip"
    embed_dim: int
    init_logit_scale: float | None = None
    init_logit_bias: float | None = None


def read_json_object(path: str | os.PathLike, described_as: str) -> dict:
    """The JSON object in the file at `path`; ValueError naming `described_as` (e.g. "model config
    '/x/config.json'") when the file is not JSON or holds something other than an object."""
    try:
        with open(path) as handle:
            values = json.load(handle)
    except json.JSONDecodeError as error:
        raise ValueError(f"{described_as} is not valid JSON: {error}") from error
    if not isinstance(values, dict):
        raise ValueError(f"{described_as} must hold a JSON object, got {type(values).__name__}")
    return values


def apply_overrides(values: dict, overrides: dict[str, Any]) -> dict:
    """Return a copy of config dict `values` with `overrides` applied.

    Each override key is a top-level key ("embed_dim") or a dotted path ("vision.width",
    "preprocess.mean"); a dict value is merged into the section it names instead of replacing it
    (`vision={"width": 32}` changes only the width). Keys are checked when the result is turned
    into a ModelConfig, which names any unknown key.
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
    return merged


def _deep_merge(base: dict, update: dict) -> dict:
    result = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _deep_merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result
