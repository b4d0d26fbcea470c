"""Patch dropout (FLIP): in training, each sample keeps a random subset of its patch tokens."""

from __future__ import annotations

import torch
from torch import nn


def keep_random_patches(patches: torch.Tensor, keep: int) -> torch.Tensor:
    """patches [B, P, W] -> [B, keep, W]: an independent random subset per sample, in original order."""
    batch = patches.shape[0]
    scores = torch.rand(batch, patches.shape[1], device=patches.device)
    kept_indices = scores.topk(keep, dim=1).indices.sort(dim=1).values  # [B, keep]
    return patches.gather(1, kept_indices.unsqueeze(-1).expand(-1, -1, patches.shape[2]))


class PatchDropout(nn.Module):
    """Drop a fraction `probability` of patches per sample while training; identity in eval.

    At least one patch is always kept. The class token is not a patch: callers pass patches only.
    """

    def __init__(self, probability: float):
        super().__init__()
        if not 0.0 <= probability < 1.0:
            raise ValueError(f"probability must be in [0, 1), got {probability!r}")
        self.probability = probability

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        if not self.training or self.probability == 0.0:
            return patches
        keep = max(1, int(patches.shape[1] * (1.0 - self.probability)))
        return keep_random_patches(patches, keep)

    def extra_repr(self) -> str:
        return f"probability={self.probability}"
