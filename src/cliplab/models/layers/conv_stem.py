"""MobileCLIP's convolutional patch embedding (timm's `ConvStem` in `vit_base_mci_224`).

Three non-overlapping strided convolutions instead of one: 4x4 stride 4 to W/4 channels, BatchNorm,
GELU; 2x2 stride 2 at W/4 channels, BatchNorm, GELU; 2x2 stride 2 (with bias) to W channels. The
output grid is the image's divided by 16, as a 16x16 patch embedding's. Its BatchNorms' statistics
freeze when a locked tower asks (`batch_norm.FreezableBatchNorm2d`).
"""

from __future__ import annotations

import torch
from torch import nn

from cliplab.models.layers.batch_norm import FreezableBatchNorm2d

CONV_STEM_STRIDE = 16


class ConvStem(nn.Module):
    """images [B, 3, S, S] -> feature map [B, W, S / 16, S / 16]."""

    def __init__(self, width: int, norm_eps: float = 1e-5):
        super().__init__()
        hidden = width // 4
        self.conv1 = nn.Conv2d(3, hidden, kernel_size=4, stride=4, bias=False)
        self.norm1 = FreezableBatchNorm2d(hidden, eps=norm_eps)
        self.conv2 = nn.Conv2d(hidden, hidden, kernel_size=2, stride=2, bias=False)
        self.norm2 = FreezableBatchNorm2d(hidden, eps=norm_eps)
        self.conv3 = nn.Conv2d(hidden, width, kernel_size=2, stride=2)
        self.activation = nn.GELU()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        hidden = self.activation(self.norm1(self.conv1(images)))
        hidden = self.activation(self.norm2(self.conv2(hidden)))
        return self.conv3(hidden)
