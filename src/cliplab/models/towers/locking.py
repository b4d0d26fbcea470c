"""Freezing a tower for LiT-style training: all but its last N parameter groups, as open_clip does.

A group is a list of modules and/or bare parameters (class token, position embedding), listed from
input to output. Each tower family gives its groups as open_clip counts them (`TowerFamily.lock_groups`;
the model adds its projection to the last one when open_clip's lock freezes it). For open_clip
3.3.0's own towers `open_clip_layout` regroups a cliplab tower's [embeddings or stem], block 0, ...,
block L-1, [final norm, pooler] as open_clip's `lock_image_tower` / `lock_text_tower` do:
[embeddings], block 0, ..., block L-2, [block L-1, final norm, pooler], [] (the projection's group);
so `unlocked_groups=1` leaves the projection alone trainable and 2 adds the last block with the
final norm, in both libraries.

Locking freezes every parameter of the locked groups, norm layers included (open_clip's
`--lock-image`); `freeze_norms=False` leaves the norm layers trainable (what open_clip's Hugging
Face text tower does without `--lock-text-freeze-layer-norm`). BatchNorm running statistics are a
separate matter, as in open_clip: with `freeze_bn_stats` the locked groups' `FreezableBatchNorm2d`
layers normalise with their running statistics and stop updating them (`--lock-image-freeze-bn-stats`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

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


def open_clip_layout(parameter_groups: Callable[[nn.Module], list[list[GroupItem]]]
                     ) -> Callable[[nn.Module], list[list[GroupItem]]]:
    """A family's `lock_groups` for a tower open_clip locks with its own layout (module docstring),
    from the tower's [first, *blocks, head]; the last group is empty until the model adds its projection."""
    def lock_groups(tower: nn.Module) -> list[list[GroupItem]]:
        first, *blocks, head = parameter_groups(tower)
        if not blocks:
            raise ValueError("a tower to lock needs at least one block")
        return [first, *blocks[:-1], [*blocks[-1], *head], []]
    return lock_groups


def freeze_groups(groups: list[list[GroupItem]], unlocked_groups: int, freeze_norms: bool,
                  argument_name: str = "unlocked_groups", *, freeze_bn_stats: bool = False) -> None:
    """Freeze every parameter in `groups`, then unfreeze the last `unlocked_groups` groups, and every
    norm layer's parameters when `freeze_norms` is False; with `freeze_bn_stats` the frozen groups'
    freezable BatchNorm layers keep their running statistics (see `layers.batch_norm`)."""
    if not isinstance(unlocked_groups, int) or not 0 <= unlocked_groups <= len(groups):
        raise ValueError(f"{argument_name} must be an int in [0, {len(groups)}] (this tower has "
                         f"{len(groups)} groups), got {unlocked_groups!r}")
    for name, value in (("freeze_norms", freeze_norms), ("freeze_bn_stats", freeze_bn_stats)):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a bool, got {value!r}")
    all_items = [item for group in groups for item in group]
    for parameter in group_parameters(all_items):
        parameter.requires_grad_(False)
    for group in groups[len(groups) - unlocked_groups:]:
        for parameter in group_parameters(group):
            parameter.requires_grad_(True)
    if not freeze_norms:
        for parameter in norm_parameters(all_items):
            parameter.requires_grad_(True)
    if not freeze_bn_stats:
        return
    for group in groups[:len(groups) - unlocked_groups]:
        for item in group:
            for sub in item.modules() if isinstance(item, nn.Module) else ():
                if isinstance(sub, FreezableBatchNorm2d):
                    sub.freeze_statistics()


def is_frozen(items: Iterable[GroupItem]) -> bool:
    """True when no parameter of `items` requires a gradient."""
    return not any(parameter.requires_grad for parameter in group_parameters(items))
