"""The checks every configuration dataclass runs in `__post_init__`, and the one error they raise.

A check names the key it checks, as its dataclass spells it, and the requirement:

    check_positive_int("batch_size", value)       # ConfigError: config key 'batch_size' must be ...
    require(low <= high, "min_lr", min_lr, "must be <= lr")

`ConfigError` is a user error (`InvalidInputError`, also a ValueError) carrying `key`, `value` and
`requirement`. Its key reads in one of two ways, by what the key belongs to (`quoted`):

- a key of the training configuration, which a YAML file or `--set` addresses (the sections of
  `TrainConfig`, the x-clip objectives): "config key 'optim.lr' must be ..., got ..."; a composer
  (`cliplab.train.config.io`, `ObjectivesConfig.from_dict`) puts the section in front of the
  section's own key (`with_prefix`);
- a key of a model's architecture (`ModelConfig`, the tower families' configs: "vision.width must
  be ..., got ...") or of a section another package validates on its own (`DataConfig`), whose
  message a composer keeps whole after the section's name: "config section 'data': ...".

This module imports only `cliplab.errors`, so every package's configs use it.
"""

from __future__ import annotations

import math
from typing import Any

from cliplab.errors import InvalidInputError


class ConfigError(InvalidInputError):
    """A configuration key holds a value that cannot be used. `key` is the dotted name (see the
    module docstring for `quoted`)."""

    def __init__(self, key: str, value: Any, requirement: str, *, quoted: bool = True):
        self.key, self.value, self.requirement, self.quoted = key, value, requirement, quoted
        subject = f"config key '{key}'" if quoted else key
        super().__init__(f"{subject} {requirement}, got {value!r}")

    @classmethod
    def sentence(cls, key: str, message: str) -> "ConfigError":
        """A requirement relating several keys, said whole by `message` (`key`: the one to change);
        reported after its section's name, as a key that is not quoted."""
        error = cls(key, None, message, quoted=False)
        InvalidInputError.__init__(error, message)
        return error

    def __reduce__(self):
        # Rebuilt from its parts, so that it crosses process boundaries (`cliplab.distributed`).
        return _rebuild, (type(self), self.key, self.value, self.requirement, self.quoted, str(self))

    def with_prefix(self, prefix: str) -> "ConfigError":
        """The error as the composer of section `prefix` reports it (module docstring)."""
        if not self.quoted:
            return SectionError(prefix, str(self))
        return ConfigError(f"{prefix}.{self.key}" if prefix else self.key, self.value, self.requirement)


def _rebuild(cls: type, key: str, value: Any, requirement: str, quoted: bool, message: str) -> ConfigError:
    error = cls(key, value, requirement, quoted=quoted)
    InvalidInputError.__init__(error, message)
    return error


class SectionError(ConfigError):
    """A section's own message, reported whole after the section's name."""

    def __init__(self, section: str, message: str):
        InvalidInputError.__init__(self, f"config section '{section}': {message}")
        self.key, self.value, self.requirement, self.quoted = section, None, message, True

    def with_prefix(self, prefix: str) -> "SectionError":
        return self

    def __reduce__(self):
        return type(self), (self.key, self.requirement)


def require(condition: bool, key: str, value: Any, requirement: str, *, quoted: bool = True) -> None:
    if not condition:
        raise ConfigError(key, value, requirement, quoted=quoted)


def require_together(condition: bool, key: str, message: str) -> None:
    """A check relating several keys (`ConfigError.sentence`)."""
    if not condition:
        raise ConfigError.sentence(key, message)


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_bool(key: str, value: Any, *, quoted: bool = True) -> None:
    require(isinstance(value, bool), key, value, "must be true or false", quoted=quoted)


def check_positive_int(key: str, value: Any, *, quoted: bool = True) -> None:
    require(is_int(value) and value > 0, key, value, "must be a positive integer", quoted=quoted)


def check_optional_positive_int(key: str, value: Any, *, quoted: bool = True) -> None:
    if value is not None:
        check_positive_int(key, value, quoted=quoted)


def check_int_at_least(key: str, value: Any, low: int, *, quoted: bool = True) -> None:
    require(is_int(value) and value >= low, key, value, f"must be an integer >= {low}", quoted=quoted)


def check_number(key: str, value: Any, *, low: float = -math.inf, high: float = math.inf,
                 low_inclusive: bool = True, high_inclusive: bool = True, quoted: bool = True) -> None:
    """A finite int or float (not a bool) within the bounds."""
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    above = is_number and (value >= low if low_inclusive else value > low)
    below = is_number and (value <= high if high_inclusive else value < high)
    bounds = f"{'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
    require(is_number and above and below, key, value, f"must be a finite number in {bounds}", quoted=quoted)


def check_non_negative(key: str, value: Any, *, quoted: bool = True) -> None:
    require(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0,
            key, value, "must be a finite number >= 0", quoted=quoted)


def check_probability(key: str, value: Any, *, quoted: bool = True) -> None:
    """A float in [0, 1) (a dropout rate)."""
    require(isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value < 1.0, key, value,
            "must be a float in [0, 1)", quoted=quoted)


def check_choice(key: str, value: Any, choices: tuple, *, quoted: bool = True) -> None:
    require(value in choices, key, value, f"must be one of {choices}", quoted=quoted)
