"""Rules naming a model's tensors in a foreign layout: the data each tower family declares.

A `KeyRule` matches cliplab tensor names (a full-match regex) and names the foreign tensor(s)
holding the same numbers, with a `transform` for the foreign side's layout:

    "same"        foreign tensor == cliplab tensor
    "transpose"   foreign [in, out] == cliplab Linear weight [out, in] (open_clip's `x @ proj`)
    "squeeze1"/2  the foreign tensor has 1 / 2 extra leading dims of size 1 (HF SigLIP's (1,) scale,
                  (1, 1, D) probe)

Several tensors on one side can hold one tensor's rows on the other (see
`cliplab.pretrained.key_maps`, which applies the rules).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

TRANSFORMS = ("same", "transpose", "squeeze1", "squeeze2")
PARAMETER = r"(?P<param>weight|bias)"
NORM = r"(?P<param>weight|bias|running_mean|running_var|num_batches_tracked)"


@dataclass(frozen=True)
class KeyRule:
    """cliplab names matching `pattern` (a full-match regex) <-> foreign `targets`.

    targets: format strings filled with the match's groups (positional "{0}", ..., and named ones
    such as "{param}"). Rules are tried in order; the first full match wins.
    """

    pattern: str
    targets: tuple[str, ...]
    transform: str = "same"

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise ValueError(f"transform must be one of {TRANSFORMS}, got {self.transform!r}")


def rule(pattern: str, *targets: str, transform: str = "same") -> KeyRule:
    return KeyRule(pattern, tuple(targets), transform)


def renamed(ours: str, theirs: str, names: Mapping[str, str]) -> list[KeyRule]:
    """One rule a name: cliplab's `ours` + key <-> the foreign `theirs` + value. A key ending in "."
    is a module, its weight and bias mapping to the value's ("norm_attn." -> "norm1": norm1.weight,
    norm1.bias); any other key is one tensor. `ours` is a regex (the keys are taken literally),
    `theirs` a format string of its groups."""
    return [rule(ours + re.escape(mine) + PARAMETER, theirs + foreign + ".{param}") if mine.endswith(".") else
            rule(ours + re.escape(mine), theirs + foreign) for mine, foreign in names.items()]
