"""ViTamin's convolutional stem (timm's `vitamin.MbConvStages`): the hybrid patch embedding before
its transformer, in timm's layout.

    stem         3x3 conv stride 2 (bias) to C0, LayerNorm2d + GELU, 3x3 conv (bias)
    stages.S.J   MbConv blocks, the first of each stage stride 2 (S = 0, 1: widths C0, C1)
    pool         LayerNorm2d, then a 3x3 conv stride 2 to the transformer's width W

An MbConv block (timm's `MbConvLNBlock`, pre-norm inverted bottleneck) adds to its shortcut:
1x1 conv to 4 * C_out, GELU, depthwise 3x3 conv (stride 1 or 2), GELU, 1x1 conv to C_out, after
a LayerNorm2d of its input. The shortcut of a stride-2 block is a 3x3 average pool (stride 2,
padding 1, padding not counted) and a 1x1 conv when the width changes. Every LayerNorm2d has eps
1e-6. images [B, 3, S, S] -> [B, W, S / 16, S / 16].
"""

from __future__ import annotations

import torch
from torch import nn

from cliplab.models.layers.blocks import run_in_order
from cliplab.models.layers.norm2d import LayerNorm2d

NORM_EPS = 1e-6
EXPAND_RATIO = 4
STRIDE = 16  # the stem's, both stages' first blocks' and the pool's stride 2


class Stem(nn.Module):
    """images [B, 3, S, S] -> [B, C, S / 2, S / 2]."""

    def __init__(self, width: int):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.norm1 = LayerNorm2d(width, eps=NORM_EPS)
        self.act = nn.GELU()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.act(self.norm1(self.conv1(images))))


class Downsample2d(nn.Module):
    """x [B, C_in, H, W] -> average pool (3x3, stride 2) -> 1x1 conv to C_out when it differs."""

    def __init__(self, in_width: int, out_width: int):
        super().__init__()
        self.pool = nn.AvgPool2d(kernel_size=3, stride=2, padding=1, count_include_pad=False)
        self.expand = nn.Conv2d(in_width, out_width, 1) if in_width != out_width else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.pool(x))


class MbConvBlock(nn.Module):
    """x [B, C_in, H, W] -> [B, C_out, H / stride, W / stride] (module docstring)."""

    def __init__(self, in_width: int, out_width: int, stride: int):
        super().__init__()
        hidden = EXPAND_RATIO * out_width
        if stride == 2:
            self.shortcut = Downsample2d(in_width, out_width)
        else:
            self.shortcut = nn.Conv2d(in_width, out_width, 1) if in_width != out_width else nn.Identity()
        self.pre_norm = LayerNorm2d(in_width, eps=NORM_EPS)
        self.conv1_1x1 = nn.Conv2d(in_width, hidden, 1)
        self.conv2_kxk = nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden)
        self.conv3_1x1 = nn.Conv2d(hidden, out_width, 1)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.act(self.conv2_kxk(self.act(self.conv1_1x1(self.pre_norm(x)))))
        return self.conv3_1x1(hidden) + self.shortcut(x)


class StridedConv(nn.Module):
    """x [B, C, H, W] -> LayerNorm2d -> 3x3 conv stride 2 to `out_width` channels."""

    def __init__(self, in_width: int, out_width: int):
        super().__init__()
        self.norm = LayerNorm2d(in_width, eps=NORM_EPS)
        self.proj = nn.Conv2d(in_width, out_width, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(x))


class MbConvStages(nn.Module):
    """images [B, 3, S, S] -> feature map [B, W, S / 16, S / 16] (module docstring). widths: the
    stem's and the stages' (C0, C1); depths: blocks per stage; out_width: W. `grad_checkpointing`
    recomputes each stage in backward (`blocks.run_in_order`)."""

    grad_checkpointing = False

    def __init__(self, widths: tuple[int, int], depths: tuple[int, int], out_width: int):
        super().__init__()
        self.stem = Stem(widths[0])
        stages, in_width = [], widths[0]
        for width, depth in zip(widths, depths):
            stages.append(nn.Sequential(*(MbConvBlock(in_width if index == 0 else width, width, 2 if index == 0 else 1)
                                          for index in range(depth))))
            in_width = width
        self.stages = nn.Sequential(*stages)
        self.pool = StridedConv(in_width, out_width)
        for module in self.modules():  # timm's: He-normal over fan-out, zero biases
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
                nn.init.normal_(module.weight, std=(2.0 / fan_out) ** 0.5)
                nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(run_in_order(self.stages, self.stem(images), self.grad_checkpointing))
