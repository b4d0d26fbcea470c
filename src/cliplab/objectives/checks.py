"""The checks every objectives section runs in `__post_init__`: a ValueError naming the dotted key
under `objectives.` and the value (`objectives.mlm.weight must be ..., got 0.0`)."""

from __future__ import annotations

import math
from typing import Any


def require(condition: bool, key: str, value: Any, requirement: str) -> None:
    if not condition:
        raise ValueError(f"objectives.{key} {requirement}, got {value!r}")


def check_bool(key: str, value: Any) -> None:
    require(isinstance(value, bool), key, value, "must be true or false")


def check_number(key: str, value: Any, *, low: float, high: float = math.inf,
                 low_inclusive: bool = True, high_inclusive: bool = True) -> None:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    above = is_number and (value >= low if low_inclusive else value > low)
    below = is_number and (value <= high if high_inclusive else value < high)
    bounds = f"{'[' if low_inclusive else '('}{low}, {high}{']' if high_inclusive else ')'}"
    require(is_number and above and below, key, value, f"must be a finite number in {bounds}")


def check_positive_int(key: str, value: Any) -> None:
    require(isinstance(value, int) and not isinstance(value, bool) and value > 0, key, value,
            "must be a positive integer")
