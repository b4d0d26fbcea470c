"""Build a model on the meta device while keeping only this rank's shard of its initial values.

FSDP2 (`fully_shard`) splits every parameter along dim 0 into `world_size` chunks
(`torch.chunk` rules: chunks of ceil(rows / N) rows, trailing ranks possibly empty). A large model
must never exist in full on any rank, yet its initial weights should be exactly those of the full
build with the same seed, whatever N (so that a sharded run starts where a DDP run does).

`ShardedInit` gets both. Inside `ShardedInit.building()` the model's constructor runs on the meta
device, and every operation on a meta tensor is repeated on a real CPU "shadow" of it:
  - a tensor of 2 or more dims keeps only this rank's dim-0 rows; a random fill (`normal_`,
    `uniform_`, ...) is drawn on a temporary full-size tensor, so the global generator advances
    exactly as in the full build, and only the rank's rows are kept; elementwise in-place ops
    (`fill_`, `mul_`, `clamp_`, ...) apply to the kept rows;
  - a tensor of 0 or 1 dims (biases, norms, scales, buffers: a small part of a model) is kept whole.
So a rank holds its shards plus one full tensor at a time. An operation that would mix rows of a
partly kept tensor (a matmul over a weight, a data-dependent loop) raises `ShardedInitError`
naming it; cliplab's models and heads use none. Values given as data (`torch.tensor(2.65)`), which
the meta device would drop, are captured on the CPU first. The initialisers of `torch.nn.init` that
return a meta tensor untouched (`trunc_normal_`, whose rejection loop depends on the values drawn,
`orthogonal_`, `dirac_`, `sparse_`) run on a full-size CPU temporary with the same generator, and
their result is copied in: the same values and the same generator state as the full build.

`values(module)` then maps each state-dict name to its kept tensor, and `rows(name, rank_rows)`
serves them to the code that fills the sharded parameters (`cliplab.distributed.shard_fill`).
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

aten = torch.ops.aten


class ShardedInitError(RuntimeError):
    """The constructor did something the shard-by-shard build cannot reproduce exactly."""


def shard_rows(rows: int, rank: int, world_size: int) -> slice:
    """The dim-0 rows FSDP2 gives `rank` of a tensor with `rows` rows: torch.chunk's split into
    chunks of ceil(rows / world_size), ranks past the last chunk empty."""
    chunk = math.ceil(rows / world_size) if rows else 0
    return slice(min(rank * chunk, rows), min((rank + 1) * chunk, rows))


# Ops that may touch a partly kept tensor: each output element depends on the same element of
# the inputs only (or on the generator, for the random fills, drawn on a full-size temporary).
_ROWWISE_OPS = {
    aten.normal_.default, aten.uniform_.default, aten.bernoulli_.float, aten.exponential_.default,
    aten.random_.default, getattr(aten.random_, "from"), aten.random_.to, aten.log_normal_.default,
    aten.fill_.Scalar, aten.fill_.Tensor, aten.zero_.default, aten.mul_.Scalar, aten.mul_.Tensor,
    aten.add_.Scalar, aten.add_.Tensor, aten.sub_.Tensor, aten.div_.Scalar, aten.div_.Tensor,
    aten.clamp_.default, aten.clamp_.Tensor, aten.erfinv_.default, aten.copy_.default,
    aten.lift_fresh.default,
}


@dataclass
class _Shadow:
    """The kept values of one meta storage: elements [start, stop) of its flat storage."""

    storage: torch.UntypedStorage  # the meta storage (held, so its address names it alone)
    numel: int
    dtype: torch.dtype
    start: int
    stop: int
    kept: torch.Tensor  # 1-d, stop - start elements

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.stop == self.numel

    def full_buffer(self) -> torch.Tensor:
        """A full-size flat CPU buffer holding the kept elements (the others zero); for a whole
        shadow, the kept values themselves (ops on it update them in place)."""
        if self.whole:
            return self.kept
        buffer = torch.zeros(self.numel, dtype=self.dtype)
        buffer[self.start:self.stop] = self.kept
        return buffer


def _storage_key(tensor: torch.Tensor) -> int:
    return tensor.untyped_storage()._cdata


def _is_meta(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_meta


class _CaptureTensorData(TorchFunctionMode):
    """`torch.tensor(data)` under the meta device keeps no values: build it on the CPU, then move
    it to meta (a copy the dispatch recorder sees, with its values)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.tensor, torch.as_tensor) and kwargs.get("device") is None:
            return func(*args, **{**kwargs, "device": "cpu"}).to("meta")
        return func(*args, **kwargs)


# torch.nn.init functions that return early on a meta tensor (so the full build would draw values
# the meta build never records).
_META_SKIPPING_INITIALISERS = ("trunc_normal_", "orthogonal_", "dirac_", "sparse_")


def _drawn_on_cpu(initialiser):
    def initialise(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if not tensor.is_meta:
            return initialiser(tensor, *args, **kwargs)
        full = initialiser(torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu"), *args, **kwargs)
        with torch.no_grad():
            tensor.copy_(full)
        return tensor

    return initialise


@contextlib.contextmanager
def _initialisers_drawn_on_cpu():
    saved = {name: getattr(nn.init, name) for name in _META_SKIPPING_INITIALISERS}
    try:
        for name, initialiser in saved.items():
            setattr(nn.init, name, _drawn_on_cpu(initialiser))
        yield
    finally:
        for name, initialiser in saved.items():
            setattr(nn.init, name, initialiser)


class _ShadowRecorder(TorchDispatchMode):
    def __init__(self, owner: "ShardedInit"):
        super().__init__()
        self.owner = owner

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        flat_inputs, _ = tree_flatten((args, kwargs))
        flat_outputs, _ = tree_flatten(result)
        if any(_is_meta(value) for value in flat_inputs + flat_outputs):
            self.owner._shadow(func, args, kwargs, result)
        return result


class ShardedInit:
    """Records the initial values a meta-device build would have had, for one rank's shards."""

    def __init__(self, rank: int, world_size: int):
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.rank, self.world_size = rank, world_size
        self._shadows: dict[int, _Shadow] = {}

    @contextlib.contextmanager
    def building(self) -> Iterator[None]:
        """Run a constructor here: its tensors are on meta, their shard values recorded. (A model
        registry that skips initialisers on meta must be told not to: `cliplab.models.registry.
        initialisers_on_meta`.)"""
        with torch.device("meta"), _CaptureTensorData(), _initialisers_drawn_on_cpu(), _ShadowRecorder(self):
            yield

    def _kept_range(self, tensor: torch.Tensor, numel: int) -> tuple[int, int]:
        if tensor.dim() < 2 or tensor.storage_offset() != 0 or not tensor.is_contiguous() \
                or tensor.numel() != numel:
            return 0, numel
        rows = shard_rows(tensor.shape[0], self.rank, self.world_size)
        row_numel = numel // tensor.shape[0] if tensor.shape[0] else 0
        return rows.start * row_numel, rows.stop * row_numel

    def _record(self, meta: torch.Tensor, cpu: torch.Tensor) -> None:
        storage = meta.untyped_storage()
        numel = storage.nbytes() // meta.element_size()
        start, stop = self._kept_range(meta, numel)
        flat = torch.empty(0, dtype=cpu.dtype).set_(cpu.untyped_storage())
        if flat.numel() != numel or cpu.stride() != meta.stride() or cpu.storage_offset() != meta.storage_offset():
            raise ShardedInitError(f"the CPU result of building a {tuple(meta.shape)} tensor is laid out unlike "
                                   "its meta tensor")
        kept = flat[start:stop].clone()
        self._shadows[_storage_key(meta)] = _Shadow(storage, numel, meta.dtype, start, stop, kept)

    def _shadow(self, func, args, kwargs, result) -> None:
        if func.is_view:  # the output shares a recorded storage: nothing new to compute
            return
        buffers: dict[int, torch.Tensor] = {}

        def to_cpu(value):
            if isinstance(value, torch.device) and value.type == "meta":
                return torch.device("cpu")
            if not _is_meta(value):
                return value
            shadow = self._shadows.get(_storage_key(value))
            if shadow is None:
                raise ShardedInitError(f"{func} reads a meta tensor whose values were not recorded")
            if not shadow.whole and func not in _ROWWISE_OPS:
                raise ShardedInitError(f"{func} on a partly kept tensor of shape {tuple(value.shape)} cannot be "
                                       "computed shard by shard")
            key = _storage_key(value)
            if key not in buffers:
                buffers[key] = shadow.full_buffer()
            return buffers[key].as_strided(value.shape, value.stride(), value.storage_offset())

        cpu_args, cpu_kwargs = tree_map(to_cpu, (args, kwargs))
        cpu_result = func(*cpu_args, **cpu_kwargs)
        for key, buffer in buffers.items():  # in-place ops wrote into the buffers: keep their rows
            shadow = self._shadows[key]
            if not shadow.whole:
                shadow.kept = buffer[shadow.start:shadow.stop].clone()
        flat_meta, _ = tree_flatten(result)
        flat_cpu, _ = tree_flatten(cpu_result)
        for meta, cpu in zip(flat_meta, flat_cpu):
            if _is_meta(meta) and _storage_key(meta) not in self._shadows:
                self._record(meta, cpu)

    def values(self, module: nn.Module) -> "ShardValues":
        """The recorded values of `module`'s state dict, by name (call after building); a module's
        extra state (not a tensor) as the constructor left it."""
        kept = {}
        for name, tensor in module.state_dict(keep_vars=True).items():
            if not isinstance(tensor, torch.Tensor):  # a module's extra state: built as it is, kept whole
                kept[name] = (copy.deepcopy(tensor), True)
                continue
            shadow = self._shadows.get(_storage_key(tensor)) if tensor.is_meta else None
            if shadow is None or tensor.storage_offset() != 0 or tensor.numel() != shadow.numel:
                raise ShardedInitError(f"{name}: no initial value was recorded for it (built outside "
                                       "ShardedInit.building(), or a view of a larger tensor)")
            kept[name] = (shadow.kept.reshape(tensor.shape) if shadow.whole
                          else shadow.kept.reshape(-1, *tensor.shape[1:]), shadow.whole)
        return ShardValues(kept)


class ShardValues:
    """name -> (value, whole): this rank's dim-0 rows of a tensor of 2+ dims, or the whole value
    (0 or 1 dims, or a world of one)."""

    def __init__(self, kept: dict[str, tuple[torch.Tensor, bool]]):
        self.kept = kept

    def names(self) -> list[str]:
        return list(self.kept)

    def rows(self, name: str, rows: slice | None) -> torch.Tensor:
        """Rows `rows` of `name` (None: the whole value); of a partly kept tensor, only the rows
        this rank kept."""
        value, whole = self.kept[name]
        if whole:
            return value if rows is None else value[rows]
        if rows is None or value.shape[0] != rows.stop - rows.start:
            raise ShardedInitError(f"{name}: this rank kept {value.shape[0]} rows, asked for "
                                   f"{'all' if rows is None else f'{rows.start}:{rows.stop}'}")
        return value
