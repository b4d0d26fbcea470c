"""Small convolutional image tower for tiny images (28x28 Fashion-MNIST on a CPU)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from cliplab.models.config import VisionConfig
from cliplab.models.layers import ConvNormAct
from cliplab.models.towers.locking import GroupItem
from cliplab.models.towers.vision_transformer import check_images


class ConvTower(nn.Module):
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
        self.grad_checkpointing = False

    def forward_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, 3, S, S] -> (pooled [B, W], cell tokens [B, G*G, W])."""
        check_images(images, self.config.image_size)
        features = self.stem(images)
        for stage in self.stages:
            if self.grad_checkpointing and torch.is_grad_enabled():
                features = checkpoint(stage, features, use_reentrant=False)
            else:
                features = stage(features)
        tokens = self.norm_post(features.flatten(2).transpose(1, 2))
        return tokens.mean(dim=1), tokens

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)[0]

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] -> cell tokens [B, G*G, W] (row-major over the final grid)."""
        return self.forward_features(images)[1]

    def parameter_groups(self) -> list[list[GroupItem]]:
        """Locking groups, input to output: stem, each stage, final norm."""
        return [[self.stem], *([stage] for stage in self.stages), [self.norm_post]]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's activations in backward instead of storing them."""
        self.grad_checkpointing = enable
