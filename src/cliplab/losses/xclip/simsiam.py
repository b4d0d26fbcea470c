"""SimSiam (arXiv 2011.10566): two views, a predictor on one branch, stop-gradient on the other.

    D(p, z) = - <p / |p|, stopgrad(z) / |z|>
    loss    = (mean_b D(p1_b, z2_b) + mean_b D(p2_b, z1_b)) / 2        in [-1, 1]

z_k is view k's projection, p_k the predictor applied to it. The target branch z never receives
gradient through this loss. No in-batch negatives: each rank averages its own samples, and DDP's
gradient averaging combines them. (x-clip writes the same objective as 2 - 2 cos summed over the
two directions: a shift and a factor 4 away.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def negative_cosine_to_target(predictions: torch.Tensor, targets: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """predictions, targets: [B, D] float -> [B] fp32, -cos(prediction, target) with no gradient to targets."""
    predictions = F.normalize(predictions.float(), dim=-1, eps=eps)
    targets = F.normalize(targets.detach().float(), dim=-1, eps=eps)
    return -(predictions * targets).sum(dim=-1)


def simsiam_loss(
    predictions_1: torch.Tensor,
    predictions_2: torch.Tensor,
    projections_1: torch.Tensor,
    projections_2: torch.Tensor,
) -> torch.Tensor:
    """Symmetric SimSiam loss; all inputs [B, D] float (view 1 / view 2). Returns 0-d fp32."""
    shapes = {tuple(t.shape) for t in (predictions_1, predictions_2, projections_1, projections_2)}
    if len(shapes) != 1 or predictions_1.dim() != 2 or predictions_1.shape[0] == 0:
        raise ValueError(f"simsiam inputs must all be non-empty [B, D] of one shape, got {sorted(shapes)}")
    return (negative_cosine_to_target(predictions_1, projections_2).mean()
            + negative_cosine_to_target(predictions_2, projections_1).mean()) / 2
