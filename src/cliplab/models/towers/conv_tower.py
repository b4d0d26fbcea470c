"""Small convolutional image tower for tiny images (28x28 Fashion-MNIST on a CPU)."""

from __future__ import annotations

import torch
from torch import nn

from cliplab.models.tower_configs import VisionConfig
from cliplab.models.layers import ConvNormAct
from cliplab.models.towers.locking import GroupItem
from cliplab.models.towers.staged import StagedTower


class ConvTower(StagedTower):
    """images [B, 3, S, S] float -> pooled [B, W] and cell tokens [B, G*G, W], G = ceil(S / 2**L).

    A stem at full resolution with W / 2**L channels, then L stages that each halve the resolution
    and double the channels (a stride-2 block and a stride-1 block), ending at W channels. Every
    spatial cell of the last stage is a token; tokens get a LayerNorm and the pooled vector is their
    mean.
    """

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        self.width = self.token_width = config.width
        channels = config.width // 2 ** config.layers
        self.stem = ConvNormAct(3, channels)
        stages = []
        for _ in range(config.layers):
            stages.append(nn.Sequential(ConvNormAct(channels, 2 * channels, stride=2),
                                        ConvNormAct(2 * channels, 2 * channels)))
            channels *= 2
        self.stages = nn.ModuleList(stages)
        self.norm_post = nn.LayerNorm(config.width)

    def pool(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.norm_post(features.flatten(2).transpose(1, 2))
        return tokens.mean(dim=1), tokens

    def parameter_groups(self) -> list[list[GroupItem]]:
        """Locking groups, input to output: stem, each stage, final norm."""
        return [[self.stem], *([stage] for stage in self.stages), [self.norm_post]]
