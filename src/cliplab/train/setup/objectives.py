"""The x-clip objective terms of a run (`cliplab.objectives`), and the module that trains them with
the model."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from cliplab.config_checks import ConfigError
from cliplab.objectives.builder import build_objectives
from cliplab.objectives.config import ObjectivesConfig


def build_run_objectives(config: ObjectivesConfig, model: nn.Module, tokenizer: Any, *,
                         accum_freq: int) -> nn.Module | None:
    """The objectives of the `objectives` section for `model`, or None when none is enabled;
    accum_freq: `loop.accum_freq`, which must be 1 with objectives. Initialises their heads from the
    global torch generator."""
    objectives = build_objectives(config, model, tokenizer)
    if not objectives.weights:
        return None
    if accum_freq > 1:
        raise ConfigError("loop.accum_freq", accum_freq,
                          "must be 1 when objectives are enabled (their terms run their own forwards per batch)")
    return objectives


class ModelWithObjectives(nn.Module):
    """The model plus the x-clip objective heads as one module, so DDP and the optimiser see both.

    forward(images, tokens) -> the model's output dict plus "objective_terms": {name: 0-d loss}
    (unweighted; the loss weights and adds them). The heads are saved in train_state.pt.
    """

    def __init__(self, model: nn.Module, objectives: nn.Module):
        super().__init__()
        self.model = model
        self.objectives = objectives

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> dict[str, Any]:
        output = self.model(images, tokens)
        terms = self.objectives(self.model, {"images": images, "tokens": tokens}, output)
        return {**output, "objective_terms": terms}
