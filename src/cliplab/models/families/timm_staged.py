"""What the families of staged timm towers share ("timm_convnext", "timm_swin"), beyond what every
timm family shares (`timm_trunk`): reading timm's facts for a model, the
per-stage stochastic depth rates, and the tower frame (stages of `DownsampledStage`s, timm's lock
groups, blocks as FSDP units).

timm's group matcher of both models counts a stage's downsampling layer with its first block (the
two share one ordinal); the tower's own first and last groups (stem, final norm) are each
family's.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from cliplab.models.families.open_clip_sections import VISION_KEYS, check_known
from cliplab.models.families.timm_trunk import refuse_option
from cliplab.models.layers.drop_path import drop_path_rates
from cliplab.models.timm_models import timm_constructor_args
from cliplab.models.tower_configs import check_positive_int
from cliplab.models.towers.locking import GroupItem


def timm_arguments(vision: dict, kind: str, built_at: dict) -> tuple[str, dict]:
    """(timm model name, timm's constructor arguments for it) of an open_clip vision_cfg; refused
    where an argument of `built_at` differs from the value the family builds."""
    check_known(vision, VISION_KEYS, "vision_cfg")
    name = vision["timm_model_name"]
    arguments = timm_constructor_args(name)
    for option, value in built_at.items():
        if arguments[option] != value:
            refuse_option(name, kind, option, arguments[option])
    return name, arguments


def check_stage_lists(config, names: tuple[str, str]) -> None:
    """The config's two per-stage lists `names` (e.g. depths and dims): non-empty lists of positive
    ints, one entry per stage each."""
    for name in names:
        values = getattr(config, name)
        if not isinstance(values, list) or not values:
            raise ValueError(f"vision.{name} must be a non-empty list of positive ints, got {values!r}")
        for index, value in enumerate(values):
            check_positive_int(f"vision.{name}[{index}]", value)
    (first, firsts), (second, seconds) = ((name, getattr(config, name)) for name in names)
    if len(firsts) != len(seconds):
        raise ValueError(f"vision.{first} and vision.{second} must have one entry per stage, got {len(firsts)} "
                         f"and {len(seconds)}")


def stage_drop_path_rates(rate: float, depths: list[int]) -> list[list[float]]:
    """timm's per-block stochastic depth rates (linear from 0 to `rate` over all blocks), per stage."""
    rates = iter(drop_path_rates(rate, sum(depths)))
    return [[next(rates) for _ in range(depth)] for depth in depths]


class StagedTimmTower(nn.Module, ABC):
    """images -> tokens [B, P, C] through `self.stages` (an nn.ModuleList of `DownsampledStage`),
    then pooled [B, W] = head(pooled_norm(pool of the tokens)) and per-token [B, P, W] =
    head(pooled_norm(tokens)): the projection into the shared latent maps the tokens as it maps the
    pooled vector. Subclasses define `trunk_tokens`, set `config` (with `pool`) and `head`, and
    override `pooled_norm` where timm normalises after pooling (ConvNeXt)."""

    stages: nn.ModuleList

    @abstractmethod
    def trunk_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] -> the last stage's tokens [B, P, C], row-major over its grid."""

    def pooled_norm(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def pooled(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, P, C] -> head(pooled_norm(mean or max over P)) [B, W]."""
        pooled = tokens.mean(dim=1) if self.config.pool == "avg" else tokens.amax(dim=1)
        return self.head(self.pooled_norm(pooled))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] -> pooled [B, W]."""
        return self.pooled(self.trunk_tokens(images))

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] -> tokens through the same norm and head [B, P, W]."""
        return self.head(self.pooled_norm(self.trunk_tokens(images)))

    def forward_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, 3, S, S] -> (pooled [B, W], tokens [B, P, W]), the trunk run once."""
        tokens = self.trunk_tokens(images)
        return self.pooled(tokens), self.head(self.pooled_norm(tokens))

    def stage_groups(self) -> list[list[GroupItem]]:
        """timm's lock groups of the stages: each block, a stage's downsampling layer with its first."""
        groups: list[list[GroupItem]] = []
        for stage in self.stages:
            groups.append([stage.downsample, stage.blocks[0]])
            groups += [[block] for block in stage.blocks[1:]]
        return groups

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward instead of storing them."""
        for stage in self.stages:
            stage.grad_checkpointing = enable


def stage_blocks(tower: StagedTimmTower) -> list[nn.Module]:
    """The FSDP units of a staged tower: every block, input to output (the downsampling layers, stem
    and head stay in the root unit)."""
    return [block for stage in tower.stages for block in stage.blocks]
