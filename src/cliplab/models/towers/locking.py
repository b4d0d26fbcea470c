"""Freezing a tower for LiT-style training: all but its last N parameter groups, as open_clip does.

A group is a list of modules and/or bare parameters (class token, position embedding), listed from
input to output. A tower lists its own groups, [embeddings or stem], block 0, ..., block L-1,
[final norm, pooler]; `open_clip_groups` regroups them with the projection as open_clip 3.3.0's
`lock_image_tower` / `lock_text_tower` do: [embeddings], block 0, ..., block L-2,
[block L-1, final norm, pooler], [projection]. So `unlocked_groups=1` leaves the projection alone
trainable and 2 adds the last block with the final norm, in both libraries.

Locking freezes every parameter of the locked groups, norm layers included (open_clip's
`--lock-image`); `freeze_norms=False` leaves the norm layers trainable (what open_clip's Hugging
Face text tower does without `--lock-text-freeze-layer-norm`). BatchNorm running statistics are a
separate matter: `batch_norms` lists the BatchNorm layers of the locked groups, which a model keeps
in eval mode when asked (`--lock-image-freeze-bn-stats`), so their statistics stop moving too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from torch import nn

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


def open_clip_groups(tower_groups: list[list[GroupItem]], projection: nn.Module) -> list[list[GroupItem]]:
    """open_clip's locking groups (module docstring) from a tower's own [first, *blocks, head]."""
    first, *blocks, head = tower_groups
    if not blocks:
        raise ValueError("a tower to lock needs at least one block")
    return [first, *blocks[:-1], [*blocks[-1], *head], [projection]]


def locked_items(groups: list[list[GroupItem]], unlocked_groups: int) -> list[GroupItem]:
    """The items of every group but the last `unlocked_groups`."""
    return [item for group in groups[:len(groups) - unlocked_groups] for item in group]


def batch_norms(items: Iterable[GroupItem]) -> list[nn.Module]:
    """The BatchNorm layers inside `items`."""
    return [sub for item in items if isinstance(item, nn.Module) for sub in item.modules()
            if isinstance(sub, nn.modules.batchnorm._BatchNorm)]


def freeze_groups(groups: list[list[GroupItem]], unlocked_groups: int, freeze_norms: bool,
                  argument_name: str = "unlocked_groups") -> None:
    """Freeze every parameter in `groups`, then unfreeze the last `unlocked_groups` groups, and every
    norm layer's parameters when `freeze_norms` is False."""
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


def is_frozen(items: Iterable[GroupItem]) -> bool:
    """True when no parameter of `items` requires a gradient."""
    return not any(parameter.requires_grad for parameter in group_parameters(items))
