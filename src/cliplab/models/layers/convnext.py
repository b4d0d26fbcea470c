"""ConvNeXt's layers (Liu et al. 2022, in timm's parameter layout): the residual block and the
downsampling layer between stages. Feature maps are [B, C, H, W]; a channels-last tensor stays
channels-last (the block's per-pixel part runs on the [B, H, W, C] view, a copy-free permute then)."""

from __future__ import annotations

import torch
from torch import nn

from cliplab.models.layers.blocks import MLP, LayerScale
from cliplab.models.layers.drop_path import DropPath
from cliplab.models.layers.norm2d import LayerNorm2d


class ConvNextBlock(nn.Module):
    """x [B, C, H, W] -> x + drop_path(scale(mlp(norm(depthwise(x))))) [B, C, H, W].

    depthwise: a k x k convolution per channel (with bias, 'same' padding); norm: LayerNorm over
    the channels; mlp: C -> int(mlp_ratio * C) -> C with exact GELU, per pixel; scale: a learned
    per-channel layer scale starting at `layer_scale` (None: none); drop_path: stochastic depth.
    """

    def __init__(self, channels: int, *, kernel_size: int = 7, mlp_ratio: float = 4.0, norm_eps: float = 1e-6,
                 layer_scale: float | None = 1e-6, drop_path: float = 0.0):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=norm_eps)
        self.mlp = MLP(channels, int(mlp_ratio * channels), "gelu")
        self.scale = nn.Identity() if layer_scale is None else LayerScale(channels, layer_scale)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_pixel = self.depthwise(x).permute(0, 2, 3, 1)  # [B, H, W, C]
        branch = self.scale(self.mlp(self.norm(per_pixel))).permute(0, 3, 1, 2)
        return x + self.drop_path(branch)


def convnext_downsample(in_channels: int, out_channels: int, norm_eps: float = 1e-6) -> nn.Sequential:
    """[B, C_in, H, W] -> [B, C_out, H / 2, W / 2]: LayerNorm over the channels, then a 2x2 stride-2
    convolution with bias (timm's `stages.N.downsample.0` / `.1`)."""
    return nn.Sequential(LayerNorm2d(in_channels, eps=norm_eps),
                         nn.Conv2d(in_channels, out_channels, kernel_size=2, stride=2))
