"""FastViT (MobileCLIP's image encoders): a MobileOne stem, convolutional RepMixer stages, attention
stages with conditional positional encodings, a MobileOne conv widening the last stage, mean
pooling. Module names are timm's (`timm.models.fastvit.FastVit`), so the tensor names are timm's.

    stem           3 MobileOne blocks: 3x3 stride 2 to widths[0]; depthwise 3x3 stride 2; 1x1
    stages.I       downsample (when the width changes or downsamples[I]: a 7x7 stride-2 large-kernel
                   conv, optionally squeeze-excited and GELU'd, then a 1x1 MobileOne block; its
                   modules sit under `downsample.proj.0/1` in timm), pos_emb (RepCPE or identity),
                   blocks (RepMixerBlock or AttentionBlock)
    final_conv     depthwise-grouped 3x3 MobileOne block to head_ratio * widths[-1] channels,
                   squeeze-excited
    pooled         mean over the final grid

`reparameterize()` folds every train-time branch (MobileOne blocks, large-kernel convs, RepMixers,
positional encodings) into single convolutions for inference (`layers.mobileone`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from cliplab.models.layers import BlockStack
from cliplab.models.layers.drop_path import drop_path_rates
from cliplab.models.layers.fastvit_blocks import AttentionBlock, ConditionalPositionEncoding, RepMixerBlock
from cliplab.models.layers.mobileone import LargeKernelConv, MobileOneBlock, reparameterize_all
from cliplab.models.towers.locking import GroupItem
from cliplab.models.towers.staged import StagedTower

if TYPE_CHECKING:
    from cliplab.models.families.timm_fastvit import TimmFastVitConfig

DOWNSAMPLE_STRIDE = 2


class FastVitStage(BlockStack):
    """x [B, C_in, H, W] -> blocks(pos_emb(downsample(x))) [B, C, H', W'] (timm's FastVitStage)."""

    def __init__(self, downsample: nn.Module, pos_emb: nn.Module, blocks: list[nn.Module]):
        super().__init__(blocks)
        self.downsample = downsample
        self.pos_emb = pos_emb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.pos_emb(self.downsample(x)))


def _stem(width: int, scale_branch: bool, reparameterized: bool) -> nn.Sequential:
    options = {"scale_branch": scale_branch, "reparameterized": reparameterized}
    return nn.Sequential(MobileOneBlock(3, width, 3, stride=2, **options),
                         MobileOneBlock(width, width, 3, stride=2, groups=width, **options),
                         MobileOneBlock(width, width, 1, **options))


def _downsample(config: TimmFastVitConfig, in_width: int, width: int, squeeze_excite: bool) -> nn.Sequential:
    return nn.Sequential(
        LargeKernelConv(in_width, width, config.downsample_kernel_size, stride=DOWNSAMPLE_STRIDE, groups=in_width,
                        squeeze_excite=squeeze_excite, activation=config.downsample_activation,
                        reparameterized=config.reparameterized),
        MobileOneBlock(width, width, 1, reparameterized=config.reparameterized))


def _block(config: TimmFastVitConfig, stage: int, drop_path: float) -> nn.Module:
    width, mlp_ratio = config.widths[stage], config.mlp_ratios[stage]
    if config.token_mixers[stage] == "attention":
        return AttentionBlock(width, mlp_ratio=mlp_ratio, layer_scale=config.layer_scale, norm=config.attention_norm,
                              drop_path=drop_path)
    return RepMixerBlock(width, kernel_size=config.mixer_kernel_size, mlp_ratio=mlp_ratio,
                         layer_scale=config.layer_scale, drop_path=drop_path, reparameterized=config.reparameterized)


class FastVitTower(StagedTower):
    """images [B, 3, S, S] float -> pooled [B, W] and cell tokens [B, G*G, W] of the final conv,
    W = int(head_ratio * widths[-1]), G = S / 2^(2 + downsampling stages) (module docstring)."""

    def __init__(self, config: TimmFastVitConfig):
        super().__init__()
        self.config = config
        self.stem = _stem(config.widths[0], config.stem_scale_branch, config.reparameterized)
        stages, in_width = [], config.widths[0]
        rates = iter(drop_path_rates(config.drop_path, sum(config.layers)))  # timm's: linear over all blocks
        for stage, (depth, width) in enumerate(zip(config.layers, config.widths)):
            downsample = (_downsample(config, in_width, width, config.se_downsamples[stage])
                          if config.downsamples[stage] or in_width != width else nn.Identity())
            pos_emb = (ConditionalPositionEncoding(width, reparameterized=config.reparameterized)
                       if config.position_encodings[stage] else nn.Identity())
            stages.append(FastVitStage(downsample, pos_emb, [_block(config, stage, next(rates)) for _ in range(depth)]))
            in_width = width
        self.stages = nn.ModuleList(stages)
        self.width = self.token_width = config.output_width
        self.final_conv = MobileOneBlock(in_width, self.width, 3, groups=in_width, squeeze_excite=True,
                                         reparameterized=config.reparameterized)

    def pool(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        final = self.final_conv(features)  # [B, W, G, G]
        return final.mean((2, 3)), final.flatten(2).transpose(1, 2)

    def parameter_groups(self) -> list[list[GroupItem]]:
        """Locking groups as timm's FastVit group matcher counts them: the stem; each stage's first
        block with its downsampling and positional encoding; each further block; the final conv
        (timm's unmatched group, which holds timm's classifier when that is the projection)."""
        groups: list[list[GroupItem]] = [[self.stem]]
        for stage in self.stages:
            first, *rest = stage.blocks
            groups.append([stage.downsample, stage.pos_emb, first])
            groups += [[block] for block in rest]
        return groups + [[self.final_conv]]

    def reparameterize(self) -> "FastVitTower":
        """Fold every train-time branch into one convolution per block, in place, for inference:
        eval-mode outputs stay equal up to float rounding. The config says `reparameterized=True`
        afterwards (the module layout timm builds with `inference_mode=True`). Returns self."""
        reparameterize_all(self)
        self.config = self.config.folded()
        return self
