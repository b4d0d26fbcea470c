"""Configuration of the x-clip family of extra objectives: one keyword-only dataclass per term.

Everything is off by default, so a training config without an `objectives:` section trains plain
CLIP. Each term's default weight is x-clip's (MLM 0.05, image SSL 0.05, multiview 0.1); x-clip's
similarity regulariser defaults to weight 0 (off), so cliplab picks 0.1 for when it is enabled.
Every section validates itself and raises ValueError naming the dotted key.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


def _require(condition: bool, key: str, value: Any, requirement: str) -> None:
    if not condition:
        raise ValueError(f"objectives.{key} {requirement}, got {value!r}")


def _check_bool(key: str, value: Any) -> None:
    _require(isinstance(value, bool), key, value, "must be true or false")


def _check_number(key: str, value: Any, *, low: float, high: float = math.inf,
                  low_inclusive: bool = True, high_inclusive: bool = True) -> None:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    above = is_number and (value >= low if low_inclusive else value > low)
    below = is_number and (value <= high if high_inclusive else value < high)
    bounds = f"{'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
    _require(is_number and above and below, key, value, f"must be a finite number in {bounds}")


def _check_positive_int(key: str, value: Any) -> None:
    _require(isinstance(value, int) and not isinstance(value, bool) and value > 0, key, value,
             "must be a positive integer")


def _check_term(section: str, enabled: Any, weight: Any) -> None:
    _check_bool(f"{section}.enabled", enabled)
    _check_number(f"{section}.weight", weight, low=0.0, low_inclusive=False)


@dataclass(kw_only=True)
class ContrastiveConfig:
    """How the main image-text contrastive term is computed.

    decoupled: DCL, the positive left out of the softmax denominator (also applied to FILIP and
    multiview). extra_latent_projection: a second pair of projections scores the image-to-text
    direction (x-clip / CLOOB). With either on, the objectives compute the main contrastive term
    themselves (`dcl_loss`, or `clip_loss` with only the extra projection) and the training loop
    must not add its own (see `Objectives.replaces_contrastive_loss`). weight: that term's weight.
    """

    decoupled: bool = False
    extra_latent_projection: bool = False
    weight: float = 1.0

    def __post_init__(self) -> None:
        _check_bool("contrastive.decoupled", self.decoupled)
        _check_bool("contrastive.extra_latent_projection", self.extra_latent_projection)
        _check_number("contrastive.weight", self.weight, low=0.0, low_inclusive=False)

    @property
    def replaces_standard_loss(self) -> bool:
        return self.decoupled or self.extra_latent_projection


@dataclass(kw_only=True)
class FilipConfig:
    """Fine-grained late interaction (`filip_loss`), added to the main contrastive term.

    tile_size: image/text columns scored at a time; memory O(B_local x tile_size x T x P).
    """

    enabled: bool = False
    weight: float = 1.0
    tile_size: int = 32

    def __post_init__(self) -> None:
        _check_term("filip", self.enabled, self.weight)
        _check_positive_int("filip.tile_size", self.tile_size)


@dataclass(kw_only=True)
class MlmConfig:
    """Masked language modelling on the text tower (`mlm_loss`); BERT's 15% / 80-10-10 recipe."""

    enabled: bool = False
    weight: float = 0.05
    mask_probability: float = 0.15
    mask_token_fraction: float = 0.8
    random_token_fraction: float = 0.1

    def __post_init__(self) -> None:
        _check_term("mlm", self.enabled, self.weight)
        _check_number("mlm.mask_probability", self.mask_probability, low=0.0, high=1.0, low_inclusive=False)
        _check_number("mlm.mask_token_fraction", self.mask_token_fraction, low=0.0, high=1.0)
        _check_number("mlm.random_token_fraction", self.random_token_fraction, low=0.0, high=1.0)
        _require(self.mask_token_fraction + self.random_token_fraction <= 1.0, "mlm.random_token_fraction",
                 self.random_token_fraction, f"plus mlm.mask_token_fraction ({self.mask_token_fraction}) must be <= 1")


@dataclass(kw_only=True)
class SimSiamConfig:
    """SimSiam on two augmentations of each image's pooled embedding (`simsiam_loss`).

    projector: Linear(E, hidden_dim)-BN-ReLU-Linear(hidden_dim, projection_dim)-BN;
    predictor: Linear(projection_dim, predictor_hidden_dim)-BN-ReLU-Linear(.., projection_dim).
    """

    enabled: bool = False
    weight: float = 0.05
    hidden_dim: int = 512
    projection_dim: int = 256
    predictor_hidden_dim: int = 128

    def __post_init__(self) -> None:
        _check_term("simsiam", self.enabled, self.weight)
        for name in ("hidden_dim", "projection_dim", "predictor_hidden_dim"):
            _check_positive_int(f"simsiam.{name}", getattr(self, name))


@dataclass(kw_only=True)
class SimClrConfig:
    """SimCLR NT-Xent on two augmentations of each image's pooled embedding (`simclr_loss`).

    projection head: Linear(E, hidden_dim)-ReLU-Linear(hidden_dim, projection_dim).
    """

    enabled: bool = False
    weight: float = 0.05
    temperature: float = 0.1
    hidden_dim: int = 512
    projection_dim: int = 128

    def __post_init__(self) -> None:
        _check_term("simclr", self.enabled, self.weight)
        _check_number("simclr.temperature", self.temperature, low=0.0, low_inclusive=False)
        _check_positive_int("simclr.hidden_dim", self.hidden_dim)
        _check_positive_int("simclr.projection_dim", self.projection_dim)


@dataclass(kw_only=True)
class MultiviewConfig:
    """Contrastive loss between augmented views (`multiview_loss`).

    augment_images / augment_texts: which modalities get an augmented view (at least one).
    """

    enabled: bool = False
    weight: float = 0.1
    augment_images: bool = True
    augment_texts: bool = True

    def __post_init__(self) -> None:
        _check_term("multiview", self.enabled, self.weight)
        _check_bool("multiview.augment_images", self.augment_images)
        _check_bool("multiview.augment_texts", self.augment_texts)
        _require(self.augment_images or self.augment_texts, "multiview.augment_texts", self.augment_texts,
                 "or multiview.augment_images must be true")


@dataclass(kw_only=True)
class SimRegConfig:
    """Similarity regularisation between the image-image and text-text structures (`sim_reg_loss`)."""

    enabled: bool = False
    weight: float = 0.1

    def __post_init__(self) -> None:
        _check_term("sim_reg", self.enabled, self.weight)


@dataclass(kw_only=True)
class AugmentConfig:
    """The augmented views used by SimSiam, SimCLR and multiview.

    Images: random resized crop (area fraction in crop_scale, aspect ratio in crop_ratio) resized
    back to the input size, then a horizontal flip with flip_probability. Texts: each ordinary
    token dropped with token_drop_probability (the rest close up, specials kept). seed: the
    augmentation generator's seed (offset by the process rank).
    """

    crop_scale: tuple[float, float] = (0.4, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_probability: float = 0.5
    token_drop_probability: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        self.crop_scale = tuple(self.crop_scale)
        self.crop_ratio = tuple(self.crop_ratio)
        _require(len(self.crop_scale) == 2, "augment.crop_scale", self.crop_scale, "must be two numbers")
        _check_number("augment.crop_scale[0]", self.crop_scale[0], low=0.0, high=1.0, low_inclusive=False)
        _check_number("augment.crop_scale[1]", self.crop_scale[1], low=self.crop_scale[0], high=1.0)
        _require(len(self.crop_ratio) == 2, "augment.crop_ratio", self.crop_ratio, "must be two numbers")
        _check_number("augment.crop_ratio[0]", self.crop_ratio[0], low=0.0, low_inclusive=False)
        _check_number("augment.crop_ratio[1]", self.crop_ratio[1], low=self.crop_ratio[0])
        _check_number("augment.flip_probability", self.flip_probability, low=0.0, high=1.0)
        _check_number("augment.token_drop_probability", self.token_drop_probability, low=0.0, high=1.0,
                      high_inclusive=False)
        _require(isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0,
                 "augment.seed", self.seed, "must be an integer >= 0")


_SECTIONS = {
    "contrastive": ContrastiveConfig,
    "filip": FilipConfig,
    "mlm": MlmConfig,
    "simsiam": SimSiamConfig,
    "simclr": SimClrConfig,
    "multiview": MultiviewConfig,
    "sim_reg": SimRegConfig,
    "augment": AugmentConfig,
}


@dataclass(kw_only=True)
class ObjectivesConfig:
    """All extra objectives; the `objectives:` section of a training config.

    Example (YAML):
        objectives:
          contrastive: {decoupled: true}
          mlm: {enabled: true}
          simsiam: {enabled: true, weight: 0.05}
    """

    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    filip: FilipConfig = field(default_factory=FilipConfig)
    mlm: MlmConfig = field(default_factory=MlmConfig)
    simsiam: SimSiamConfig = field(default_factory=SimSiamConfig)
    simclr: SimClrConfig = field(default_factory=SimClrConfig)
    multiview: MultiviewConfig = field(default_factory=MultiviewConfig)
    sim_reg: SimRegConfig = field(default_factory=SimRegConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        for name, section_type in _SECTIONS.items():
            _require(isinstance(getattr(self, name), section_type), name, getattr(self, name),
                     f"must be a {section_type.__name__}")

    @property
    def any_enabled(self) -> bool:
        """True when at least one term (or a contrastive mode) is on."""
        return self.contrastive.replaces_standard_loss or any(
            getattr(self, name).enabled for name in ("filip", "mlm", "simsiam", "simclr", "multiview", "sim_reg"))

    def to_dict(self) -> dict:
        """Plain nested dict (YAML/JSON-ready: tuples become lists); `from_dict` inverts it."""
        values = asdict(self)
        values["augment"] = {key: list(value) if isinstance(value, tuple) else value
                             for key, value in values["augment"].items()}
        return values

    @classmethod
    def from_dict(cls, values: dict | None) -> "ObjectivesConfig":
        """Build from a (partial) nested dict; unknown keys raise ValueError naming them."""
        values = {} if values is None else values
        _require(isinstance(values, dict), "", values, "must be a mapping")
        unknown = sorted(set(values) - set(_SECTIONS))
        _require(not unknown, str(unknown), values, f"unknown sections; known: {sorted(_SECTIONS)}")
        sections = {}
        for name, section_values in values.items():
            section_type = _SECTIONS[name]
            _require(isinstance(section_values, dict), name, section_values, "must be a mapping")
            known = {section_field.name for section_field in fields(section_type)}
            unknown_keys = sorted(set(section_values) - known)
            _require(not unknown_keys, f"{name}.{unknown_keys}", section_values,
                     f"unknown keys; known: {sorted(known)}")
            sections[name] = section_type(**section_values)
        return cls(**sections)
