"""State-dict conversion between cliplab's names and a foreign layout, written once for every format.

A format is a list of `KeyRule`s (`cliplab.models.key_rules`: each tower family declares its own).
Each rule matches cliplab tensor names (a regex) and names the foreign tensor(s) holding the same
numbers, with a `transform` for the foreign side's layout ("same", "transpose", "squeeze1"/2).

Several tensors on one side can hold one tensor's rows on the other: along dim 0,
cat(cliplab tensors) == cat(transformed foreign tensors). That covers q/k/v (HF: three Linears,
cliplab: one qkv), open_clip's packed `in_proj` split into a query and a key/value projection, and
the ResNet's q/k/v projections. Foreign tensors of one group are equal chunks (they always are);
the cliplab side is split by the model's own shapes.

`cliplab_reader` / `to_cliplab` check a foreign state dict against what the model needs, in the
file's own names, before converting anything: missing, unexpected and mis-shaped tensors are all
listed in one `StateDictMismatchError`. Nothing is ever loaded partially.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from cliplab.errors import UserError
from cliplab.models.key_rules import TRANSFORMS, KeyRule, rule

__all__ = ["TRANSFORMS", "Group", "KeyRule", "StateDictMismatchError", "check_state_dict", "cliplab_reader",
           "from_cliplab", "groups_for", "rule", "to_cliplab"]

SHOWN_PER_KIND = 8  # names listed per kind of mismatch; the count is always given


class StateDictMismatchError(UserError):
    """A checkpoint whose tensors do not match the architecture (missing, unexpected, mis-shaped)."""


@dataclass(frozen=True)
class Group:
    """cliplab names `ours` <-> foreign names `theirs`: cat(ours) == cat(transformed theirs), dim 0."""

    ours: tuple[str, ...]
    theirs: tuple[str, ...]
    transform: str


def groups_for(names: Sequence[str], rules: Sequence[KeyRule]) -> list[Group]:
    """Group cliplab `names` (model order) by the foreign tensors their rules name. A name no rule
    matches raises ValueError: the format cannot hold that tensor."""
    compiled = [(re.compile(key_rule.pattern), key_rule) for key_rule in rules]
    grouped: dict[tuple[str, ...], tuple[list[str], str]] = {}
    for name in names:
        for pattern, key_rule in compiled:
            match = pattern.fullmatch(name)
            if match:
                theirs = tuple(target.format(*match.groups(), **match.groupdict()) for target in key_rule.targets)
                grouped.setdefault(theirs, ([], key_rule.transform))[0].append(name)
                break
        else:
            raise ValueError(f"no foreign name for cliplab tensor {name!r}")
    return [Group(tuple(ours), theirs, transform) for theirs, (ours, transform) in grouped.items()]


def _to_our_layout(tensor: torch.Tensor, transform: str) -> torch.Tensor:
    if transform == "transpose":
        return tensor.t()
    if transform == "squeeze1":
        return tensor.reshape(tensor.shape[1:])
    if transform == "squeeze2":
        return tensor.reshape(tensor.shape[2:])
    return tensor


def _to_their_layout(tensor: torch.Tensor, transform: str) -> torch.Tensor:
    if transform == "transpose":
        return tensor.t()
    if transform == "squeeze1":
        return tensor.reshape(1, *tensor.shape)
    if transform == "squeeze2":
        return tensor.reshape(1, 1, *tensor.shape)
    return tensor


def from_cliplab(state: Mapping[str, torch.Tensor], rules: Sequence[KeyRule]) -> dict[str, torch.Tensor]:
    """cliplab state dict -> foreign state dict (contiguous tensors, foreign names)."""
    converted = {}
    for group in groups_for(list(state), rules):
        whole = torch.cat([state[name] for name in group.ours]) if len(group.ours) > 1 else state[group.ours[0]]
        parts = whole.chunk(len(group.theirs)) if len(group.theirs) > 1 else (whole,)
        for name, part in zip(group.theirs, parts):
            converted[name] = _to_their_layout(part, group.transform).contiguous()
    return converted


def _shape(tensor: torch.Tensor) -> list[int]:
    return list(tensor.shape)


def check_state_dict(expected: Mapping[str, torch.Tensor], loaded: Mapping[str, torch.Tensor],
                     source: str) -> None:
    """StateDictMismatchError naming the missing, unexpected and mis-shaped tensors of `loaded`
    (names and shapes as the file has them) against `expected`; a 1-element tensor matches any
    1-element shape (open_clip stores logit_scale as 0-d or (1,))."""
    missing = [name for name in expected if name not in loaded]
    unexpected = [name for name in loaded if name not in expected]
    misshaped = [name for name in expected if name in loaded
                 and _shape(loaded[name]) != _shape(expected[name])
                 and not (loaded[name].numel() == expected[name].numel() == 1)]
    if not (missing or unexpected or misshaped):
        return
    lines = []
    for label, names, describe in (
            ("missing", missing, lambda name: f"{name} {_shape(expected[name])}"),
            ("unexpected", unexpected, lambda name: f"{name} {_shape(loaded[name])}"),
            ("mis-shaped", misshaped,
             lambda name: f"{name} is {_shape(loaded[name])}, expected {_shape(expected[name])}")):
        if names:
            shown = ", ".join(describe(name) for name in names[:SHOWN_PER_KIND])
            more = f" and {len(names) - SHOWN_PER_KIND} more" if len(names) > SHOWN_PER_KIND else ""
            lines.append(f"{len(names)} {label}: {shown}{more}")
    raise StateDictMismatchError(f"{source} does not match the architecture: " + "; ".join(lines))


def cliplab_reader(loaded: Mapping[str, torch.Tensor], read: Callable[[str], torch.Tensor],
                   expected_ours: Mapping[str, torch.Tensor], rules: Sequence[KeyRule],
                   source: str) -> Callable[[str], torch.Tensor]:
    """A reader of cliplab tensors by name for a model whose state dict is `expected_ours` (any
    device, meta included: only names and shapes are used), from a foreign file whose tensors'
    names and shapes are `loaded` (meta tensors will do) and whose data `read(name)` returns.

    Checks everything first (see `check_state_dict`, which names `source`). Each foreign tensor is
    read when the first cliplab tensor of its group is asked for; the group's other cliplab
    tensors wait until asked for, so at most one group is held at a time when read in model order.
    """
    expected_theirs = from_cliplab(expected_ours, rules)
    check_state_dict(expected_theirs, loaded, source)
    group_of = {name: group for group in groups_for(list(expected_ours), rules) for name in group.ours}
    pending: dict[str, torch.Tensor] = {}

    def take(name: str) -> torch.Tensor:
        if name in pending:
            return pending.pop(name)
        group = group_of[name]
        parts = [_to_our_layout(read(theirs).reshape(expected_theirs[theirs].shape), group.transform)
                 for theirs in group.theirs]
        whole = torch.cat(parts) if len(parts) > 1 else parts[0]
        if len(group.ours) == 1:
            return whole.reshape(expected_ours[name].shape)
        sizes = [expected_ours[member].shape[0] for member in group.ours]
        for member, piece in zip(group.ours, whole.split(sizes)):
            pending[member] = piece.clone()  # not views of one block: each tensor owns its memory
        return pending.pop(name)
    return take


def to_cliplab(loaded: Mapping[str, torch.Tensor], expected_ours: Mapping[str, torch.Tensor],
               rules: Sequence[KeyRule], source: str) -> dict[str, torch.Tensor]:
    """Foreign state dict -> cliplab state dict (see `cliplab_reader`); dtypes are kept."""
    take = cliplab_reader(loaded, loaded.__getitem__, expected_ours, rules, source)
    return {name: take(name) for name in expected_ours}
