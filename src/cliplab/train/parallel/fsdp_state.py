"""Values into and out of an FSDP2 module and its optimiser, in the unsharded format.

In: `fill_shards` allocates a meta-built sharded module and copies each rank's rows from a
`ShardSource` (the recorded initial values, or a checkpoint read one tensor at a time);
`load_shards` does the same into allocated shards. `load_optimizer_state` gives a sharded AdamW
the rows of a full, index-keyed optimiser state dict (the format `optimizer.state_dict()` has
without sharding).

Out (the whole model, for evaluation on the main rank): `gather_state_dict` all-gathers one
tensor at a time and keeps the whole value on the main rank only (on the CPU), renamed and
reshaped to the unsharded format (`sharding.canonical_name`). Every rank must call it; other
ranks get None. Checkpoints never gather: they are DCP shards (`dcp_checkpointer`).
"""

from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from cliplab.distributed.shard_init import shard_rows
from cliplab.train.parallel.fsdp import canonical_name, is_held_scalar

# (unsharded name, this rank's dim-0 rows or None for the whole value) -> tensor (or, for an
# `_extra_state` entry, the module's extra state).
ShardSource = Callable[[str, "slice | None"], Any]


def local_rows(tensor: DTensor) -> slice:
    """The dim-0 rows of `tensor` (an FSDP2 parameter or its optimiser state) this rank holds."""
    mesh = tensor.device_mesh
    return shard_rows(tensor.shape[0], mesh.get_local_rank(), mesh.size())


def shard_value(name: str, tensor: DTensor, source: ShardSource) -> torch.Tensor:
    """This rank's rows of `name` from `source`, shaped like the local shard of `tensor`."""
    rows = local_rows(tensor)
    canonical = canonical_name(name)
    value = source(canonical, None).reshape(1)[rows] if is_held_scalar(name) else source(canonical, rows)
    return value.reshape(tensor.to_local().shape)


def _module_of(root: nn.Module, state_name: str) -> nn.Module:
    prefix = state_name.rsplit(".", 1)[0] if "." in state_name else ""
    return root.get_submodule(prefix)


@torch.no_grad()
def load_shards(root: nn.Module, source: ShardSource) -> None:
    """Copy into every shard, buffer and extra state of `root` its value from `source`."""
    for name, tensor in root.state_dict(keep_vars=True).items():
        if isinstance(tensor, DTensor):
            tensor.to_local().copy_(shard_value(name, tensor, source))
        elif isinstance(tensor, torch.Tensor):
            tensor.copy_(source(canonical_name(name), None))
        else:
            _module_of(root, name).set_extra_state(source(canonical_name(name), None))


def fill_shards(root: nn.Module, source: ShardSource, device: torch.device) -> None:
    """Allocate the shards of `root` (built on meta, then sharded) on `device` and fill them."""
    root.to_empty(device=device)
    load_shards(root, source)


def rows_of(read: Callable[[str], Any]) -> ShardSource:
    """A ShardSource over a reader of whole values (a state dict, or a file read tensor by tensor)."""
    def source(name: str, rows: slice | None) -> Any:
        value = read(name)
        return value if rows is None else value[rows]
    return source


def _full(name: str, value: Any, keep: bool) -> Any:
    if isinstance(value, DTensor):
        value = value.full_tensor()  # a collective: every rank, in the same order
    if not isinstance(value, torch.Tensor):
        return copy.deepcopy(value) if keep else None
    if not keep:
        return None
    value = value.detach().cpu()
    return value.reshape(()) if is_held_scalar(name) else value


def gather_state_dict(root: nn.Module, *, keep: bool) -> dict[str, Any] | None:
    """The unsharded state dict of `root` (canonical names, 0-d scalars), kept where `keep`."""
    state = {canonical_name(name): _full(name, value, keep) for name, value in root.state_dict().items()}
    return state if keep else None


def _parameter_names(optimizer: torch.optim.Optimizer) -> list[str]:
    return [name for group in optimizer.param_groups for name in group["param_names"]]


def unsharded_indices(optimizer: torch.optim.Optimizer, order: list[str]) -> list[int]:
    """For each parameter of the sharded `optimizer` (in its index order), its index in the
    optimiser of the unsharded module. Holding a 0-d parameter as a vector moves it to the end
    of its module's parameters; `order` (the unsharded module's parameter names, in
    `named_parameters` order) puts it back, group by group, as `optim.parameter_groups` lists them."""
    position = {name: index for index, name in enumerate(order)}
    indices, offset = [], 0
    for group in optimizer.param_groups:
        names = [canonical_name(name) for name in group["param_names"]]
        ranked = {name: offset + rank for rank, name in enumerate(sorted(names, key=position.__getitem__))}
        indices.extend(ranked[name] for name in names)
        offset += len(names)
    return indices


def load_optimizer_state(optimizer: torch.optim.Optimizer, state_dict: dict, order: list[str]) -> None:
    """Load an unsharded optimiser state dict (a DDP run's single-file checkpoint) into the sharded
    `optimizer`: each rank takes its rows of every parameter-shaped tensor."""
    parameters = [parameter for group in optimizer.param_groups for parameter in group["params"]]
    names, indices = _parameter_names(optimizer), unsharded_indices(optimizer, order)
    sharded = {}
    for index, parameter in enumerate(parameters):
        values = state_dict["state"].get(indices[index])
        if values is not None:
            sharded[index] = {key: value if key in _COUNTERS else _like_parameter(names[index], parameter, value)
                              for key, value in values.items()}
    live_groups = optimizer.state_dict()["param_groups"]
    groups = [{**saved, "params": live["params"], "param_names": live["param_names"]}
              for saved, live in zip(state_dict["param_groups"], live_groups, strict=True)]
    optimizer.load_state_dict({"state": sharded, "param_groups": groups})


# Optimiser state entries that count steps: never sharded, even for a 0-d parameter (AdamW's `step`).
_COUNTERS = ("step",)


def _like_parameter(name: str, parameter: torch.Tensor, value: Any) -> Any:
    """`value` (a whole state tensor of `parameter`, e.g. AdamW's moments) as a DTensor sharded like it."""
    if not isinstance(parameter, DTensor) or not isinstance(value, torch.Tensor):
        return value
    local = shard_value(name, parameter, rows_of(lambda _: value))
    return DTensor.from_local(local.to(parameter.to_local().device), parameter.device_mesh, parameter.placements,
                              run_check=False, shape=parameter.shape, stride=parameter.stride())
