"""Learning-rate schedule: linear warmup, then cosine decay (or constant) to min_lr, per optimiser step.

A plain function of the step, so the schedule's only state is the step counter `TrainState` keeps and
checkpoints; `set_lr` writes the value, times each group's lr scale, into every parameter group
before each step.
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
    """Every group's lr: `lr` times the group's `lr_scale` (`param_groups`; 1 where a group has none)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def warmup_warning(config: OptimConfig, total_steps: int) -> str | None:
    """The start-up warning for a warmup of at least `total_steps` steps (the peak lr is reached at
    the last step at best, and nothing decays), or None when the warmup is shorter than the run."""
    if config.warmup < total_steps:
        return None
    last_lr = learning_rate(total_steps - 1, total_steps, config)
    if config.warmup == total_steps:
        outcome = f"the learning rate reaches its peak {config.lr:g} only at the last step and never decays"
    else:
        outcome = (f"the learning rate rises to {last_lr:.3g} at the last step and never reaches its peak "
                   f"{config.lr:g} (--lr)")
    tenth = total_steps // 10
    lower = f"{tenth}, a tenth of the run" if tenth > 0 else "0, no warmup"
    return (f"warning: warmup is {config.warmup} step{'s' if config.warmup != 1 else ''} (--warmup) but the run has "
            f"{total_steps}: {outcome}; lower --warmup (e.g. {lower}) or train longer")


def warn_if_warmup_outlasts_run(config: OptimConfig, total_steps: int) -> None:
    warning = warmup_warning(config, total_steps)
    if warning is not None:
        print(warning)
