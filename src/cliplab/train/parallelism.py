"""How the trainable module is wrapped for the step: DDP across processes, then torch.compile.

The step calls `ParallelModel.module`; the unwrapped model is what is saved. A sharded wrapper
(FSDP2's `fully_shard`) belongs here, with a checkpointer that saves its sharded state.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cliplab.train.config import TrainConfig
from cliplab.train.distributed_setup import DistributedContext


@dataclass(frozen=True)
class ParallelModel:
    """module: what the step runs (images, tokens) -> outputs; no_sync(): a context in which a
    backward does not all-reduce the gradients (DDP's no_sync; a null context in one process)."""

    module: nn.Module
    no_sync: Callable[[], ContextManager]


def wrap_for_training(model: nn.Module, config: TrainConfig, context: DistributedContext) -> ParallelModel:
    """DDP (when distributed), then torch.compile (when asked)."""
    wrapped, no_sync = model, contextlib.nullcontext
    if context.distributed:
        device_ids = [context.device.index] if context.device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=device_ids,
                                          find_unused_parameters=config.distributed.find_unused_parameters)
        no_sync = wrapped.no_sync
    if config.model.torchcompile:
        wrapped = torch.compile(wrapped)
    return ParallelModel(module=wrapped, no_sync=no_sync)
