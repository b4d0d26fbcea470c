"""Building on the meta device. By default a meta build is the architecture only (counting, a
model to be filled from a checkpoint): its initialisers are skipped (`initialisers_skipped`, which
`cliplab.models.registry.build_model` enters). Inside `initialisers_on_meta()` its values are
recorded elsewhere (`cliplab.distributed.shard_init` shadows every meta tensor for FSDP2), so the
initialisers run and a tower must not skip what gives its values (`meta_values_recorded`).

`to_meta_with_values(module)`: a module built on a real device (one whose initialisation cannot be
replayed shard by shard: transformers' models) handed to such a recorder: its tensors become meta
tensors by copies the recorder sees.

`torch_initialisers()`: torch.nn.init's own functions for a block inside `initialisers_skipped`,
for importing a library that keeps references to them at import (transformers does), which would
otherwise keep the no-ops for the rest of the process.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

INITIALISERS = ("normal_", "uniform_", "zeros_", "ones_", "constant_", "kaiming_uniform_", "kaiming_normal_",
                "trunc_normal_", "xavier_uniform_", "xavier_normal_")
_TORCH_INITIALISERS = {name: getattr(nn.init, name) for name in INITIALISERS}

_values_recorded = False


def _set_initialisers(functions: dict) -> None:
    for name, function in functions.items():
        setattr(nn.init, name, function)


@contextlib.contextmanager
def initialisers_skipped() -> Iterator[None]:
    """torch.nn.init's in-place initialisers as no-ops (every module, torch's own layers included,
    calls them through `torch.nn.init`). For the meta device, where tensors hold no values: a
    random draw there still runs torch's reference kernels and, the first time, imports the
    compiler stack (seconds for a ViT-B)."""
    saved = {name: getattr(nn.init, name) for name in INITIALISERS}
    try:
        _set_initialisers({name: lambda tensor, *args, **kwargs: tensor for name in INITIALISERS})
        yield
    finally:
        _set_initialisers(saved)


@contextlib.contextmanager
def torch_initialisers() -> Iterator[None]:
    """torch.nn.init's own initialisers for the block, whatever is in force around it."""
    saved = {name: getattr(nn.init, name) for name in INITIALISERS}
    try:
        _set_initialisers(_TORCH_INITIALISERS)
        yield
    finally:
        _set_initialisers(saved)


@contextlib.contextmanager
def initialisers_on_meta() -> Iterator[None]:
    """Run the initialisers on the meta device too, for a caller that shadows the meta tensors
    with real values (`cliplab.distributed.shard_init`)."""
    global _values_recorded
    previous, _values_recorded = _values_recorded, True
    try:
        yield
    finally:
        _values_recorded = previous


def meta_values_recorded() -> bool:
    """True inside `initialisers_on_meta()`."""
    return _values_recorded


def to_meta_with_values(module: nn.Module) -> nn.Module:
    """`module` (on a real device) with every parameter and buffer replaced, in place, by a meta
    tensor filled by `copy_` from it (inside a recorder of meta builds, the values are recorded; tied
    tensors stay tied); -> module."""
    made: dict[int, torch.Tensor] = {}
    for submodule in module.modules():
        for store in (submodule._parameters, submodule._buffers):
            for name, tensor in list(store.items()):
                if tensor is None:
                    continue
                if id(tensor) not in made:
                    meta = torch.empty_like(tensor, device="meta")
                    with torch.no_grad():
                        meta.copy_(tensor)
                    made[id(tensor)] = (nn.Parameter(meta, requires_grad=tensor.requires_grad)
                                        if isinstance(tensor, nn.Parameter) else meta)
                store[name] = made[id(tensor)]
    return module
