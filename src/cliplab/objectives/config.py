"""Configuration of the x-clip family of extra objectives: `ObjectivesConfig`, one section per
registered term (`cliplab.objectives.terms.OBJECTIVE_TERMS`, each term's module holds its section's
dataclass) plus `augment`, the views several terms share.

Everything is off by default, so a training config without an `objectives:` section trains plain
CLIP. Each term's default weight is x-clip's (MLM 0.05, image SSL 0.05, multiview 0.1); x-clip's
similarity regulariser defaults to weight 0 (off), so cliplab picks 0.1 for when it is enabled.
Every section validates itself with `cliplab.config_checks` and raises a ConfigError naming its key,
which `from_dict` (and the training config's loader) reports as `objectives.<section>.<key>`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, make_dataclass

from cliplab.config_checks import ConfigError, check_number, require
from cliplab.objectives.terms import OBJECTIVE_TERMS


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
        require(len(self.crop_scale) == 2, "crop_scale", self.crop_scale, "must be two numbers")
        check_number("crop_scale[0]", self.crop_scale[0], low=0.0, high=1.0, low_inclusive=False)
        check_number("crop_scale[1]", self.crop_scale[1], low=self.crop_scale[0], high=1.0)
        require(len(self.crop_ratio) == 2, "crop_ratio", self.crop_ratio, "must be two numbers")
        check_number("crop_ratio[0]", self.crop_ratio[0], low=0.0, low_inclusive=False)
        check_number("crop_ratio[1]", self.crop_ratio[1], low=self.crop_ratio[0])
        check_number("flip_probability", self.flip_probability, low=0.0, high=1.0)
        check_number("token_drop_probability", self.token_drop_probability, low=0.0, high=1.0,
                     high_inclusive=False)
        require(isinstance(self.seed, int) and not isinstance(self.seed, bool) and self.seed >= 0,
                "seed", self.seed, "must be an integer >= 0")


# section name -> its dataclass: the terms' in table order, then augment.
_SECTIONS = {**{term.section: term.config for term in OBJECTIVE_TERMS}, "augment": AugmentConfig}


class _ObjectivesConfigMethods:
    """What `ObjectivesConfig` does beyond holding its sections."""

    def __post_init__(self) -> None:
        for name, section_type in _SECTIONS.items():
            require(isinstance(getattr(self, name), section_type), name, getattr(self, name),
                    f"must be a {section_type.__name__}")

    @property
    def any_enabled(self) -> bool:
        """True when at least one term (or a contrastive mode) is on."""
        return any(term.enabled(getattr(self, term.section)) for term in OBJECTIVE_TERMS)

    def to_dict(self) -> dict:
        """Plain nested dict (YAML/JSON-ready: tuples become lists); `from_dict` inverts it."""
        values = asdict(self)
        values["augment"] = {key: list(value) if isinstance(value, tuple) else value
                             for key, value in values["augment"].items()}
        return values

    @classmethod
    def from_dict(cls, values: dict | None) -> "ObjectivesConfig":
        """Build from a (partial) nested dict; a ConfigError names `objectives.<section>.<key>`."""
        values = {} if values is None else values
        require(isinstance(values, dict), "objectives", values, "must be a mapping")
        unknown = sorted(set(values) - set(_SECTIONS))
        require(not unknown, f"objectives.{unknown}", values, f"names unknown sections; known: {sorted(_SECTIONS)}")
        sections = {}
        for name, section_values in values.items():
            section_type = _SECTIONS[name]
            require(isinstance(section_values, dict), f"objectives.{name}", section_values, "must be a mapping")
            known = {section_field.name for section_field in fields(section_type)}
            unknown_keys = sorted(set(section_values) - known)
            require(not unknown_keys, f"objectives.{name}.{unknown_keys}", section_values,
                    f"names unknown keys; known: {sorted(known)}")
            try:
                sections[name] = section_type(**section_values)
            except ConfigError as error:
                raise error.with_prefix(f"objectives.{name}") from None
        return cls(**sections)


ObjectivesConfig = make_dataclass(
    "ObjectivesConfig",
    [(name, section_type, field(default_factory=section_type)) for name, section_type in _SECTIONS.items()],
    bases=(_ObjectivesConfigMethods,), kw_only=True,
    namespace={"__module__": __name__, "__doc__": """All extra objectives; the `objectives:` section of a
    training config: one field per registered term (its section's dataclass), then `augment`.

    Example (YAML):
        objectives:
          contrastive: {decoupled: true}
          mlm: {enabled: true}
          simsiam: {enabled: true, weight: 0.05}
    """},
)
