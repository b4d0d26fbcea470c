"""Running a model for inference inside training: no gradients, eval mode, previous mode restored."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


@contextmanager
def inference_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Within the block `model` is in eval mode and no gradients are recorded.

    On exit every submodule gets back its own `training` flag, so calling an evaluation from the
    training loop leaves e.g. frozen towers (kept in eval mode by a lock) exactly as they were.
    """
    previous_modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        for module, was_training in previous_modes:
            module.training = was_training


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype of the model's first floating-point parameter (float32 if it has none)."""
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32
