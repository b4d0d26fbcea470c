"""Reference implementations the loss benchmarks compare against.

These follow open_clip's single-process dense losses as a user would write them: every logit of
the batch materialised (twice for CLIP), no clamp, no upcast, no checks. They are baselines for
timing and memory only; cliplab's losses are the ones tested for correctness.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def openclip_style_clip_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                             logit_scale: torch.Tensor) -> torch.Tensor:
    """[B, D], [B, D], 0-d -> 0-d: two [B, B] logit matrices, two mean cross-entropies, halved."""
    logits_per_image = logit_scale * image_features @ text_features.T
    logits_per_text = logit_scale * text_features @ image_features.T
    labels = torch.arange(image_features.shape[0], device=image_features.device)
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def openclip_style_siglip_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                               logit_scale: torch.Tensor, logit_bias: torch.Tensor) -> torch.Tensor:
    """[B, D], [B, D], 0-d, 0-d -> 0-d: -sum log sigmoid(y * (s I T^T + b)) / B, y = 2 eye - 1."""
    batch_size = image_features.shape[0]
    logits = logit_scale * image_features @ text_features.T + logit_bias
    signs = 2 * torch.eye(batch_size, device=image_features.device, dtype=logits.dtype) - 1
    return -F.logsigmoid(signs * logits).sum() / batch_size


def loss_inputs(batch_size: int, feature_dim: int, generator: torch.Generator
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The inputs every loss benchmark times: unit-norm image and text features [B, D] drawn from
    `generator`, a scale of 10 and a bias of -10, all leaves that require grad."""
    image = F.normalize(torch.randn(batch_size, feature_dim, generator=generator), dim=-1).requires_grad_(True)
    text = F.normalize(torch.randn(batch_size, feature_dim, generator=generator), dim=-1).requires_grad_(True)
    return image, text, torch.tensor(10.0, requires_grad=True), torch.tensor(-10.0, requires_grad=True)
