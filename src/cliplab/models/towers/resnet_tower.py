"""OpenAI CLIP's ModifiedResNet image tower: a 3-conv stem, 4 bottleneck stages, attention pooling.

Differences from a torchvision ResNet (as in the CLIP paper): three stem convolutions with an
average pool instead of one with a max pool; strided blocks average-pool before their 1x1 conv
(anti-aliasing) instead of striding a conv; the final pooling is one attention step whose query is
the mean of the spatial features. The attention output's projection into the shared latent (with
bias) is the model's `image_projection` (VisionConfig.projection="linear_bias").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cliplab.models.layers.batch_norm import FreezableBatchNorm2d
from cliplab.models.tower_configs import VisionConfig
from cliplab.models.towers.locking import GroupItem
from cliplab.models.towers.staged import StagedTower

EXPANSION = 4  # a bottleneck's output has 4x its inner channels


class Bottleneck(nn.Module):
    """[B, C_in, H, W] -> [B, 4 * C, H / stride, W / stride]: 1x1, 3x3, (avg pool), 1x1 convs with
    BatchNorm and ReLU, plus a shortcut (avg pool, 1x1 conv, BatchNorm) when the shape changes."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = FreezableBatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = FreezableBatchNorm2d(channels)
        self.pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(channels, channels * EXPANSION, 1, bias=False)
        self.bn3 = FreezableBatchNorm2d(channels * EXPANSION)
        self.shortcut = None
        if stride > 1 or in_channels != channels * EXPANSION:
            self.shortcut = nn.Sequential(nn.AvgPool2d(stride),
                                          nn.Conv2d(in_channels, channels * EXPANSION, 1, bias=False),
                                          FreezableBatchNorm2d(channels * EXPANSION))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.pool(F.relu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.shortcut is None else self.shortcut(x)))


class AttentionPool(nn.Module):
    """features [B, C, G, G] -> pooled [B, C]: the mean feature (position 0) attends to itself and
    to every cell, each with a learned position embedding; heads concatenated, not projected."""

    def __init__(self, grid_size: int, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.position_embedding = nn.Parameter(torch.empty(grid_size ** 2 + 1, channels))
        nn.init.normal_(self.position_embedding, std=channels ** -0.5)
        self.qkv = nn.Linear(channels, 3 * channels)
        nn.init.normal_(self.qkv.weight, std=channels ** -0.5)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        cells = features.flatten(2).transpose(1, 2)  # [B, G*G, C]
        tokens = torch.cat((cells.mean(dim=1, keepdim=True), cells), dim=1) + self.position_embedding
        batch, length, channels = tokens.shape
        head_dim = channels // self.heads
        query, key, value = self.qkv(tokens).split(channels, dim=-1)
        query = query[:, :1].view(batch, 1, self.heads, head_dim).transpose(1, 2)  # [B, H, 1, D]
        key = key.view(batch, length, self.heads, head_dim).transpose(1, 2)
        value = value.view(batch, length, self.heads, head_dim).transpose(1, 2)
        return F.scaled_dot_product_attention(query, key, value).reshape(batch, channels)


class ModifiedResNet(StagedTower):
    """images [B, 3, S, S] -> pooled [B, 32 W] and cell tokens [B, (S/32)^2, 32 W] (W = config.width)."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        width = config.width
        self.width = config.output_width
        self.token_width = config.output_width
        self.stem = nn.Sequential(
            nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False), FreezableBatchNorm2d(width // 2), nn.ReLU(),
            nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False), FreezableBatchNorm2d(width // 2), nn.ReLU(),
            nn.Conv2d(width // 2, width, 3, padding=1, bias=False), FreezableBatchNorm2d(width), nn.ReLU(),
            nn.AvgPool2d(2))
        stages, in_channels = [], width
        for index, depth in enumerate(config.layers):
            channels, stride = width * 2 ** index, 1 if index == 0 else 2
            blocks = [Bottleneck(in_channels, channels, stride)]
            in_channels = channels * EXPANSION
            blocks += [Bottleneck(in_channels, channels) for _ in range(1, depth)]
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.attention_pool = AttentionPool(config.grid_size, config.output_width, config.heads)
        for stage in self.stages:
            for block in stage:
                nn.init.zeros_(block.bn3.weight)  # each residual branch starts as the identity

    def pool(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.attention_pool(features), features.flatten(2).transpose(1, 2)

    def parameter_groups(self) -> list[list[GroupItem]]:
        """Locking groups, input to output: stem, each stage, attention pool."""
        return [[self.stem], *([stage] for stage in self.stages), [self.attention_pool]]
