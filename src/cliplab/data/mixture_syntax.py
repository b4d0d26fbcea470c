"""open_clip's syntax of a mixture of training sources: `train_data` parts joined by `::` and one
upsampling factor per part (`1::4`). Imports nothing heavy: `DataConfig` checks a config with it
(and so the CLI's --help imports it); `data.mixture` reads the sources, as each source's `mixing`
says (`cliplab.data.sources`)."""

from __future__ import annotations

import math
from typing import Sequence

from cliplab.config_checks import ConfigError

SOURCE_SEPARATOR = "::"


def split_sources(location: str) -> list[str]:
    """The sources of a `train_data` value: its `::`-separated parts (one part: one source)."""
    return location.split(SOURCE_SEPARATOR)


def parse_factors(value: str | Sequence[float]) -> list[float]:
    """Upsampling factors from open_clip's `1::4` text or a list of numbers; a ConfigError naming the
    key for anything else, or a factor that is not a finite number > 0."""
    if isinstance(value, str):
        parts = value.split(SOURCE_SEPARATOR)
        try:
            factors = [float(part) for part in parts]
        except ValueError:
            raise _factors_error(value, "must be numbers separated by '::' (e.g. 1::4)") from None
    elif isinstance(value, (list, tuple)) and all(isinstance(factor, (int, float)) and not isinstance(factor, bool)
                                                  for factor in value):
        factors = [float(factor) for factor in value]
    else:
        raise _factors_error(value, "must be a list of numbers or '::'-separated text")
    if not factors or not all(math.isfinite(factor) and factor > 0 for factor in factors):
        raise _factors_error(value, "must all be finite numbers > 0")
    return factors


def _factors_error(value: object, requirement: str) -> ConfigError:
    return ConfigError("train_data_upsampling_factors", value, requirement, quoted=False)
