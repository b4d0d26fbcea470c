"""The common frame of the convolutional image towers: a stem, then stages, then a pooling head."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from cliplab.models.layers.blocks import run_in_order
from cliplab.models.towers.vision_transformer import check_images


class StagedTower(nn.Module, ABC):
    """Subclasses set `config`, `stem`, `stages` (an nn.ModuleList) and define
    `pool(features [B, C, G, G]) -> (pooled [B, W], tokens [B, G*G, W])`."""

    grad_checkpointing: bool = False

    @abstractmethod
    def pool(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features [B, C, G, G] of the last stage -> (pooled [B, W], tokens [B, G*G, W])."""

    def forward_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, 3, S, S] -> (pooled [B, W], cell tokens [B, G*G, W], row-major over the grid)."""
        check_images(images, self.config.image_size)
        return self.pool(run_in_order(self.stages, self.stem(images), self.grad_checkpointing))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)[0]

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] -> cell tokens [B, G*G, W]."""
        return self.forward_features(images)[1]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each stage's activations in backward instead of storing them."""
        self.grad_checkpointing = enable
