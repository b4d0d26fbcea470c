"""Stochastic depth ("drop path"): in training, a residual branch is dropped for whole samples.

timm's towers train with it (`drop_path_rate`, rising linearly from 0 at the first block to the
rate at the last); open_clip passes `timm_drop_path` through. Identity in eval mode.
"""

from __future__ import annotations

import torch

from cliplab.models.layers.random_drop import RandomDrop


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """The per-block rates for `depth` blocks: linear from 0 to `rate` (timm's rule, float32
    steps as torch.linspace makes them)."""
    return torch.linspace(0, rate, depth, device="cpu").tolist()


def drop_samples(branch: torch.Tensor, probability: float) -> torch.Tensor:
    """branch [B, ...] -> each sample's branch zeroed with `probability`, else scaled by
    1 / (1 - probability), so the expectation is unchanged."""
    keep = 1.0 - probability
    mask = branch.new_empty((branch.shape[0],) + (1,) * (branch.dim() - 1)).bernoulli_(keep)
    return branch * mask.div_(keep)


class DropPath(RandomDrop):
    """A residual branch [B, ...] dropped per sample with `probability` while training."""

    def drop(self, branch: torch.Tensor) -> torch.Tensor:
        return drop_samples(branch, self.probability)
