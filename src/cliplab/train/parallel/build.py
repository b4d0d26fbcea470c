"""How the trainable module is spread over the processes: DDP (whole copies) or FSDP2 (shards).

`ModelBuild` decides how the model and objective heads are built: in full, or (FSDP2) on the meta
device while `cliplab.distributed.shard_init.ShardedInit` keeps this rank's shard of the initial
values, drawn exactly as the full build draws them, so that a sharded run starts from the weights
a DDP run with the same seed has, and no rank ever holds the whole model.

`wrap_for_training` then gives the `ParallelModel` the step runs:
  - DDP (several processes, `distributed.fsdp` off): the model's repeated blocks compiled when
    asked (`CLIP.compile_blocks`, regional compilation), then DistributedDataParallel;
  - FSDP2 (`distributed.fsdp`): `fsdp.shard` (units, mixed precision, 0-d parameters, blocks
    compiled one by one when asked), then the shards allocated and filled;
  - one process: the module itself (its blocks compiled when asked).
Checkpoints of a sharded run are DCP directories written shard by shard by every rank
(`cliplab.train.checkpointing.dcp`, chosen with the Trainer: `trainer.build_checkpointer`); the
whole model for evaluation is gathered onto rank 0 (`whole_model`, `fsdp_state`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cliplab.distributed.shard_init import ShardedInit
from cliplab.models import build_model
from cliplab.models.lora import add_lora, base_name, is_adapter_name, lora_spec_of
from cliplab.models.registry import initialisers_on_meta
from cliplab.pretrained.formats import WeightsOpener
from cliplab.train.config import DistributedConfig
from cliplab.train.parallel.fsdp import shard
from cliplab.train.parallel.fsdp_state import ShardSource, fill_shards, gather_state_dict, rows_of
from cliplab.train.parallel.processes import DistributedContext
from cliplab.train.parallel.torch_setup import use_compile_cache


class ModelBuild:
    """Where the run's modules are built and how they are spread: `device` for
    `build_training_model`, and `building()`, the context the model and objective heads are
    constructed in; `wrap_for_training` spreads what was built as it says.

    distributed: the `distributed` section (`fsdp`, `find_unused_parameters`); context: this
    process; compile: torch.compile (`model.torchcompile`); precision: `loop.precision` (FSDP2's
    mixed precision)."""

    def __init__(self, distributed: DistributedConfig, context: DistributedContext, *, compile: bool,
                 precision: str):
        self.distributed, self.context, self.compile, self.precision = distributed, context, compile, precision
        self.sharded = distributed.fsdp
        self.device = torch.device("meta") if self.sharded else context.device
        self.recorder = ShardedInit(context.rank, context.world_size) if self.sharded else None

    @contextlib.contextmanager
    def building(self) -> Iterator[None]:
        if self.recorder is None:
            yield
            return
        with initialisers_on_meta(), self.recorder.building():
            yield


@dataclass(frozen=True)
class ParallelModel:
    """module: what the step runs (images, tokens) -> outputs; trainable: the unwrapped module
    whose (possibly sharded) parameters the optimiser steps; model: the CLIP model in it;
    no_sync(): a context in which a backward does not reduce gradients across ranks (DDP's no_sync,
    FSDP2's gradient sync off; a null context in one process); sharded: FSDP2; parameter_order:
    the trainable module's parameter names before sharding, in `named_parameters` order (the
    order of the unsharded optimiser's indices)."""

    module: nn.Module
    trainable: nn.Module
    model: nn.Module
    no_sync: Callable[[], ContextManager]
    sharded: bool
    parameter_order: tuple[str, ...]


def _parameter_order(module: nn.Module) -> tuple[str, ...]:
    return tuple(name for name, _ in module.named_parameters())


def _ddp(trainable: nn.Module, model: nn.Module, build: ModelBuild) -> ParallelModel:
    wrapped, no_sync, context = trainable, contextlib.nullcontext, build.context
    if build.compile:
        model.compile_blocks()
    if context.distributed:
        device_ids = [context.device.index] if context.device.type == "cuda" else None
        wrapped = DistributedDataParallel(trainable, device_ids=device_ids,
                                          find_unused_parameters=build.distributed.find_unused_parameters)
        no_sync = wrapped.no_sync
    return ParallelModel(module=wrapped, trainable=trainable, model=model, no_sync=no_sync, sharded=False,
                         parameter_order=_parameter_order(trainable))


def _initial_values(trainable: nn.Module, build: ModelBuild, weights: WeightsOpener | None) -> ShardSource:
    """Where the shards' first values come from: the recorded initial values, or (a pretrained
    model, `weights`) its checkpoint, read one tensor at a time; LoRA adapters added to a
    pretrained model take their recorded initial values, the layers they adapt the checkpoint's."""
    if weights is None:
        return build.recorder.values(trainable).rows
    pretrained = rows_of(weights())
    if not any(is_adapter_name(name) for name, _ in trainable.named_parameters()):
        return pretrained
    recorded = build.recorder.values(trainable).rows
    return lambda name, rows: recorded(name, rows) if is_adapter_name(name) else pretrained(base_name(name), rows)


def _fsdp(trainable: nn.Module, model: nn.Module, build: ModelBuild, weights: WeightsOpener | None) -> ParallelModel:
    initial = _initial_values(trainable, build, weights)
    order = _parameter_order(trainable)
    shard(trainable, model, precision=build.precision, compile_blocks=build.compile)
    fill_shards(trainable, initial, build.context.device)

    @contextlib.contextmanager
    def no_sync() -> Iterator[None]:
        trainable.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            trainable.set_requires_gradient_sync(True)

    return ParallelModel(module=trainable, trainable=trainable, model=model, no_sync=no_sync, sharded=True,
                         parameter_order=order)


def wrap_for_training(trainable: nn.Module, model: nn.Module, build: ModelBuild,
                      weights: WeightsOpener | None = None) -> ParallelModel:
    """The ParallelModel of `trainable` (the model, or the model with objective heads), built and
    spread as `build` says; weights: the opener of a pretrained model's checkpoint
    (`TrainingModel.weights`)."""
    if build.compile:
        use_compile_cache()
    if build.sharded:
        return _fsdp(trainable, model, build, weights)
    return _ddp(trainable, model, build)


def whole_model(parallel: ParallelModel, *, keep: bool) -> nn.Module | None:
    """A collective under FSDP2: the unwrapped model with whole weights (for evaluation) on the ranks
    that `keep` it, None on the others. Unsharded: the live model itself."""
    if not parallel.sharded:
        return parallel.model
    state = gather_state_dict(parallel.model, keep=keep)
    if not keep:
        return None
    with torch.device("meta"):
        whole = build_model(parallel.model.config, output_dict=True)
    lora = lora_spec_of(parallel.model)
    if lora is not None:
        add_lora(whole, lora)
    whole.load_state_dict(state, strict=True, assign=True)
    return whole
