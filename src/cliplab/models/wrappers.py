"""The cliplab model inside the wrappers training puts around it."""

from __future__ import annotations

from torch import nn

from cliplab.errors import UserError
from cliplab.models.clip import CLIP
from cliplab.models.config import ModelConfig


def unwrap_model(model: nn.Module) -> nn.Module:
    """Strip DistributedDataParallel (`.module`) and torch.compile (`._orig_mod`) wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel) or (
                type(model).__name__ == "DataParallel" and hasattr(model, "module")):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model


def cliplab_model(model: nn.Module) -> CLIP:
    """`model` unwrapped; UserError unless it is a cliplab model (a CLIP with its ModelConfig)."""
    model = unwrap_model(model)
    if not isinstance(model, CLIP) or not isinstance(getattr(model, "config", None), ModelConfig):
        raise UserError(f"model must be a cliplab model (built by create_model or loaded), "
                        f"got {type(model).__name__}")
    return model
