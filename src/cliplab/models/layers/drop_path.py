"""Stochastic depth ("drop path", Huang et al. 2016, as timm's `DropPath`): in training, a residual
branch's output is zeroed for a random subset of the samples and divided by the keep probability
for the others, so its expectation is unchanged; in eval it is the identity."""

from __future__ import annotations

import torch
from torch import nn


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """x [B, ...] -> [B, ...]: each sample kept with probability 1 - rate (then scaled by
    1 / (1 - rate)) or zeroed, one draw per sample; x itself when rate is 0 or not training."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    kept = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * kept.div_(keep)


def drop_path_rates(rate: float, depths: list[int]) -> list[list[float]]:
    """Per-block rates rising linearly from 0 (the first block) to `rate` (the last) over all
    stages, split per stage (timm's rule, float32 steps as timm computes them)."""
    steps = torch.linspace(0.0, rate, sum(depths), device="cpu")
    return [stage.tolist() for stage in steps.split(list(depths))]


class DropPath(nn.Module):
    """`drop_path` with a fixed rate in [0, 1), active in train mode."""

    def __init__(self, rate: float = 0.0):
        super().__init__()
        if not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise ValueError(f"drop path rate must be a number in [0, 1), got {rate!r}")
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.rate, self.training)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"
