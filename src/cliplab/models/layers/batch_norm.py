"""BatchNorm whose running statistics can be frozen, for locked towers (LiT).

open_clip's `lock_image_tower(freeze_bn_stats=True)` swaps a locked tower's BatchNorm layers for
torchvision's FrozenBatchNorm2d: they normalise with their running statistics and never update them,
in training too. `FreezableBatchNorm2d.freeze_statistics()` does the same in place, keeping the
module and its state dict names (and a timm BatchNormAct2d's activation, which the swap drops).
"""

from __future__ import annotations

from torch import nn


class FreezableBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d [B, C, H, W] -> [B, C, H, W]; after `freeze_statistics()` it stays in eval
    mode (running statistics used, never updated) whatever `train()` asks."""

    statistics_frozen = False

    def freeze_statistics(self) -> None:
        self.statistics_frozen = True
        self.eval()

    def train(self, mode: bool = True) -> "FreezableBatchNorm2d":
        return super().train(mode and not self.statistics_frozen)
