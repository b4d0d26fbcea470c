"""Convolutional building block for the small image tower."""

from __future__ import annotations

from torch import nn


def group_count(channels: int) -> int:
    """GroupNorm groups: 8 when channels allow it (per-sample statistics, batch-size independent)."""
    return 8 if channels % 8 == 0 else 1


class ConvNormAct(nn.Sequential):
    """3x3 conv (no bias) -> GroupNorm -> GELU: [B, C_in, H, W] -> [B, C_out, H / stride, W / stride]."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.GroupNorm(group_count(out_channels), out_channels),
            nn.GELU(),
        )
