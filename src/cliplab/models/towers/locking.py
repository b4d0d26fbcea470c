"""Freezing a tower for LiT-style training: all but its last N parameter groups, as open_clip does.

A group is a list of modules and/or bare parameters (class token, position embedding), listed from
input to output. Each tower family says how open_clip groups its towers with the model's projection
(`TowerFamily.lock_groups(tower, projection)`). open_clip 3.3.0's own towers (`projection_alone`):
a cliplab tower lists [embeddings or stem], block 0, ..., block L-1, [final norm, pooler], which
`open_clip_groups` regroups as open_clip's `lock_image_tower` / `lock_text_tower` do: [embeddings],
block 0, ..., block L-2, [block L-1, final norm, pooler], [projection]; so `unlocked_groups=1`
leaves the projection alone trainable and 2 adds the last block with the final norm, in both
libraries. timm trunks (`projection_with_last`): timm's group matcher's groups, the projection in
the last; so too SigLIP2's NaFlex tower (no open_clip counterpart), whose probe head ends it.

Locking freezes every parameter of the locked groups, norm layers included (open_clip's
`--lock-image`); `freeze_norms=False` leaves the norm layers trainable (what open_clip's Hugging
Face text tower does without `--lock-text-freeze-layer-norm`). BatchNorm running statistics are a
separate matter: `batch_norms` lists the BatchNorm layers of the locked groups, which a model keeps
in eval mode when asked (`--lock-image-freeze-bn-stats`), so their statistics stop moving too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from torch import nn

NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)

GroupItem = nn.Module | nn.Parameter
LockGroups = Callable[[nn.Module, nn.Module], list[list[GroupItem]]]  # (tower, projection) -> groups


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
    """open_clip's groups for its own towers (module docstring) from a tower's [first, *blocks, head]."""
    first, *blocks, head = tower_groups
    if not blocks:
        raise ValueError("a tower to lock needs at least one block")
    return [first, *blocks[:-1], [*blocks[-1], *head], [projection]]


def projection_alone(parameter_groups: Callable[[nn.Module], list[list[GroupItem]]]) -> LockGroups:
    """A family's `lock_groups` for a tower open_clip locks with its own layout (`open_clip_groups`)."""
    return lambda tower, projection: open_clip_groups(parameter_groups(tower), projection)


def projection_with_last(parameter_groups: Callable[[nn.Module], list[list[GroupItem]]]) -> LockGroups:
    """A family's `lock_groups` for a tower whose groups already end with its head (a timm trunk's, as
    timm's group matcher counts them for open_clip): the projection joins the last group."""
    def lock_groups(tower: nn.Module, projection: nn.Module) -> list[list[GroupItem]]:
        groups = parameter_groups(tower)
        return [*groups[:-1], [*groups[-1], projection]]
    return lock_groups


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
