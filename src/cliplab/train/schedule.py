"""Learning-rate schedule: linear warmup, then cosine decay (or constant) to min_lr, per optimiser step.

A plain function of the step, so the schedule's only state is the step counter `TrainState` keeps and
checkpoints; `set_lr` writes the value into every parameter group before each step.
"""

from __future__ import annotations

import math

import torch

from cliplab.train.config import OptimConfig


def learning_rate(step: int, total_steps: int, config: OptimConfig) -> float:
    """The lr for optimiser step `step` (0-based) of `total_steps`.

    Warmup: lr * (step + 1) / warmup for step < warmup (open_clip's `_warmup_lr`). Cosine: from lr to
    min_lr over the remaining steps: min_lr + 0.5 * (1 + cos(pi * e / es)) * (lr - min_lr).
    """
    if step < config.warmup:
        return config.lr * (step + 1) / config.warmup
    if config.lr_scheduler == "const":
        return config.lr
    decay_steps = max(total_steps - config.warmup, 1)
    progress = min(step - config.warmup, decay_steps) / decay_steps
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.lr - config.min_lr)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
