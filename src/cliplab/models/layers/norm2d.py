"""LayerNorm over the channels of a feature map (ConvNeXt's norm for [B, C, H, W] tensors)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """x [B, C, H, W] -> [B, C, H, W], each pixel's C values normalised on their own (an
    `nn.LayerNorm` over C, so the locking code counts it as a norm layer).

    Computed on the [B, H, W, C] view, which is contiguous for a channels-last tensor (no copy);
    the result is that view permuted back, so channels-last stays channels-last."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normalised = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return normalised.permute(0, 3, 1, 2)
