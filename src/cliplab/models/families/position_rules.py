"""The `PositionsResize` rules tower families share (`spec.TowerFamily.resize_positions`): a learned
2-D grid of patch positions resampled to the new grid (`layers.position_resize`), and a learned
text table lengthened or shortened by the run's sequence rule.

Each rule reads the configs' `grid_size` (patches or cells per side) or `position_count` and leaves
out the entries it does not know, which the caller then refuses naming them.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from cliplab.models.families.spec import PositionsResize, SequenceResize
from cliplab.models.layers.position_resize import resample_position_grid


def grid_positions(name: str, prefix_tokens: Callable[[Any], int], what: str) -> PositionsResize:
    """The rule for a tower whose entry `name` is [prefix + G*G, W]: the prefix rows (class or pooled
    tokens, `prefix_tokens(config)` of them) kept, the G x G grid resampled bicubic to the new
    config's grid. what: which rows are kept, in words (for the summary)."""

    def rule(state: dict[str, torch.Tensor], old: Any, new: Any,
             sequence_resize: SequenceResize) -> dict[str, torch.Tensor]:
        if name not in state:
            return {}
        grids = ((old.grid_size,) * 2, (new.grid_size,) * 2)
        return {name: resample_position_grid(state[name], *grids, prefix_tokens=prefix_tokens(old))}

    return PositionsResize(rule=rule, summary=f"`{name}` grid resampled bicubic (antialiased), {what}")


def sequence_positions(name: str) -> PositionsResize:
    """The rule for a text tower whose entry `name` is [position_count, W]: the run's sequence rule
    (`--context-extension`) applied to the whole table, as open_clip's `resize_text_pos_embed`
    does (a CoCa class-token row included)."""

    def rule(state: dict[str, torch.Tensor], old: Any, new: Any,
             sequence_resize: SequenceResize) -> dict[str, torch.Tensor]:
        if name not in state:
            return {}
        return {name: sequence_resize(state[name], new.position_count)}

    return PositionsResize(rule=rule, summary=f"`{name}` by --context-extension (interpolate: linear; "
                                              "longclip: Long-CLIP's stretching)")
