"""Freezing a tower for LiT-style training: all but its last N parameter groups, norms optional.

A group is a list of modules and/or bare parameters (class token, position embedding), listed from
input to output, e.g. [embeddings], block 0, ..., block L-1, [final norm, projection]. With the
norms frozen, the frozen groups' `FreezableBatchNorm2d` layers also stop updating their running
statistics (open_clip's `freeze_bn_stats`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from torch import nn

from cliplab.models.layers.batch_norm import FreezableBatchNorm2d

NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)

GroupItem = nn.Module | nn.Parameter


def group_parameters(items: Iterable[GroupItem]) -> Iterator[nn.Parameter]:
    for item in items:
        if isinstance(item, nn.Parameter):
            yield item
        else:
            yield from item.parameters()


def norm_parameters(items: Iterable[GroupItem]) -> list[nn.Parameter]:
    """Parameters of every normalisation layer inside `items`."""
    return [parameter for item in items if isinstance(item, nn.Module) for sub in item.modules()
            if isinstance(sub, NORM_TYPES) for parameter in sub.parameters(recurse=False)]


def freeze_groups(groups: list[list[GroupItem]], unlocked_groups: int, freeze_norms: bool,
                  argument_name: str = "unlocked_groups") -> None:
    """Freeze every parameter in `groups`, then unfreeze the last `unlocked_groups` groups, and every
    norm layer's parameters when `freeze_norms` is False; when it is True, the frozen groups'
    freezable BatchNorm layers keep their running statistics (see `layers.batch_norm`)."""
    if not isinstance(unlocked_groups, int) or not 0 <= unlocked_groups <= len(groups):
        raise ValueError(f"{argument_name} must be an int in [0, {len(groups)}] (this tower has "
                         f"{len(groups)} groups), got {unlocked_groups!r}")
    if not isinstance(freeze_norms, bool):
        raise ValueError(f"freeze_norms must be a bool, got {freeze_norms!r}")
    all_items = [item for group in groups for item in group]
    for parameter in group_parameters(all_items):
        parameter.requires_grad_(False)
    for group in groups[len(groups) - unlocked_groups:]:
        for parameter in group_parameters(group):
            parameter.requires_grad_(True)
    if not freeze_norms:
        for parameter in norm_parameters(all_items):
            parameter.requires_grad_(True)
        return
    for group in groups[:len(groups) - unlocked_groups]:
        for item in group:
            for sub in item.modules() if isinstance(item, nn.Module) else ():
                if isinstance(sub, FreezableBatchNorm2d):
                    sub.freeze_statistics()


def is_frozen(items: Iterable[GroupItem]) -> bool:
    """True when no parameter of `items` requires a gradient."""
    return not any(parameter.requires_grad for parameter in group_parameters(items))
