"""Patch dropout (FLIP): in training, each sample keeps a random subset of its patch tokens."""

from __future__ import annotations

import torch

from cliplab.models.layers.random_drop import RandomDrop


def keep_random_patches(patches: torch.Tensor, keep: int) -> torch.Tensor:
    """patches [B, P, W] -> [B, keep, W]: an independent random subset per sample, in original order."""
    batch = patches.shape[0]
    scores = torch.rand(batch, patches.shape[1], device=patches.device)
    kept_indices = scores.topk(keep, dim=1).indices.sort(dim=1).values  # [B, keep]
    return patches.gather(1, kept_indices.unsqueeze(-1).expand(-1, -1, patches.shape[2]))


class PatchDropout(RandomDrop):
    """Drop a fraction `probability` of patches per sample while training; identity in eval.

    At least one patch is always kept. The class token is not a patch: callers pass patches only.
    """

    def drop(self, patches: torch.Tensor) -> torch.Tensor:
        """patches [B, P, W] -> [B, max(1, int(P * (1 - probability))), W]."""
        keep = max(1, int(patches.shape[1] * (1.0 - self.probability)))
        return keep_random_patches(patches, keep)
