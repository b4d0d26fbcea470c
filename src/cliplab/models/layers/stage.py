"""A stage of a hierarchical tower: one downsampling layer, then residual blocks at the new size."""

from __future__ import annotations

import torch
from torch import nn

from cliplab.models.layers.blocks import BlockStack


class DownsampledStage(BlockStack):
    """x -> blocks(downsample(x)). `downsample` is nn.Identity for a stage that keeps the size;
    the blocks are a `BlockStack` (set `grad_checkpointing` to recompute each block in backward)."""

    def __init__(self, downsample: nn.Module, blocks: list[nn.Module]):
        super().__init__(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.downsample(x))
