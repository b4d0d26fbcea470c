"""Tower family "timm_convnext": timm's ConvNeXt as open_clip wraps it (`TimmModel`: the timm model
as `visual.trunk`, then `visual.head`), built from cliplab's layers in timm's parameter layout:
open_clip's convnext_tiny ... convnext_xxlarge_320 (11 configs).

ConvNeXt (Liu et al. 2022): a 4x4 stride-4 "patchify" convolution and a LayerNorm, then stages of
`ConvNextBlock`s (7x7 depthwise conv, LayerNorm, MLP, layer scale, stochastic depth), each stage
after the first opening with a LayerNorm and a 2x2 stride-2 convolution; the final feature map is
pooled and layer-normalised (timm's head without its classifier). No BatchNorm anywhere: the lock
has no running statistics to freeze. The head and pooling options are open_clip's
(`timm_heads`); the rest are timm's facts for the model (`cliplab.models.timm_models`).

    open_clip vision_cfg / timm                TimmConvNextConfig
    timm_model_name                            timm_model_name; depths, dims, kernel_sizes
                                               (kernel_size), patch_size, ls_init_value
                                               (layer_scale), norm_eps (None: 1e-6)
    image_size                                 image_size (any: the trunk is fully convolutional)
    timm_pool, timm_proj, timm_proj_bias,      pool, projection, mlp_head_*, head_dropout,
    timm_drop, timm_drop_path                  drop_path (see timm_heads)

    cliplab                                    open_clip
    vision_tower.stem.0 / .1                   visual.trunk.stem.0 (conv) / .1 (LayerNorm2d)
    vision_tower.stages.I.downsample.0 / .1    visual.trunk.stages.I.downsample.0 / .1
    vision_tower.stages.I.blocks.J             visual.trunk.stages.I.blocks.J (depthwise: conv_dw,
                                               norm, mlp.fc / mlp.proj: mlp.fc1 / fc2, scale.gamma:
                                               gamma)
    vision_tower.head_norm                     visual.trunk.head.norm
    vision_tower.head (MLP head)               visual.head.mlp.fc1 / fc2
    image_projection                           visual.head.proj
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cliplab.models.families.open_clip_sections import image_size
from cliplab.models.families.spec import OpenClipContext
from cliplab.models.families.timm_heads import (TimmHeadFields, build_head, head_rules, projection_locked, read_head,
                                                write_section)
from cliplab.models.families.timm_staged import (StagedTimmTower, check_stage_lists, stage_blocks,
                                                 stage_drop_path_rates, timm_arguments)
from cliplab.models.families.timm_trunk import check_timm_model_name, refuse_option, timm_family
from cliplab.models.key_rules import PARAMETER, KeyRule, renamed, rule
from cliplab.models.layers.convnext import ConvNextBlock, convnext_downsample
from cliplab.models.layers.norm2d import LayerNorm2d
from cliplab.models.layers.stage import DownsampledStage
from cliplab.models.tower_configs import check_choice, check_norm_eps, check_optional_number, check_positive_int
from cliplab.models.towers.locking import GroupItem
from cliplab.models.towers.vision_transformer import check_images

KIND = "timm_convnext"
TIMM_NORM_EPS = 1e-6  # timm's LayerNorm / LayerNorm2d default, ConvNeXt's norm_eps=None
# timm's ConvNeXt arguments this family builds only at these values.
BUILT_AT = {
    "in_chans": 3, "output_stride": 32, "stem_type": "patch", "head_norm_first": False, "head_hidden_size": None,
    "conv_mlp": False, "conv_bias": True, "use_grn": False, "act_layer": "gelu", "norm_layer": None, "drop_rate": 0.0,
}


@dataclass(kw_only=True)
class TimmConvNextConfig(TimmHeadFields):
    """timm's ConvNeXt (see the module docstring) and open_clip's head after it (`TimmHeadFields`).

    timm_model_name: the timm model the config describes (None for a config of cliplab's own sizes,
    which open_clip cannot load). image_size: input side S. depths / dims: blocks and channels per
    stage. kernel_size: the depthwise convolutions'. patch_size: the stem's stride. layer_scale:
    initial per-channel scale of each block's branch (None: none). norm_eps: every LayerNorm's.
    """

    kind: str = KIND
    timm_model_name: str | None = None
    image_size: int
    depths: list[int]
    dims: list[int]
    kernel_size: int = 7
    patch_size: int = 4
    layer_scale: float | None = 1e-6
    norm_eps: float = TIMM_NORM_EPS

    def __post_init__(self) -> None:
        check_choice("vision.kind", self.kind, (KIND,))
        check_timm_model_name(self.timm_model_name)
        for name in ("image_size", "kernel_size", "patch_size"):
            check_positive_int(f"vision.{name}", getattr(self, name))
        if self.kernel_size % 2 == 0:
            raise ValueError(f"vision.kernel_size must be odd ('same' padding), got {self.kernel_size}")
        check_stage_lists(self, ("depths", "dims"))
        if self.image_size < self.patch_size * 2 ** (len(self.dims) - 1):
            raise ValueError(f"vision.image_size ({self.image_size}) must be at least vision.patch_size * "
                             f"2 ** (stages - 1) = {self.patch_size * 2 ** (len(self.dims) - 1)} (one cell at the end)")
        check_optional_number("vision.layer_scale", self.layer_scale)
        check_norm_eps("vision.norm_eps", self.norm_eps)
        self.check_head()

    @property
    def output_width(self) -> int:
        return self.head_output_width(self.dims[-1])


class TimmConvNext(StagedTimmTower):
    """images [B, 3, S, S] float -> pooled [B, W] and cell tokens [B, G*G, W] (G = the last
    stage's side, cells row-major).

    pooled = head(head_norm(pool(feature map))), as timm's head then open_clip's; each cell token
    gets the same head_norm and head (see `StagedTimmTower`). W = the last stage's channels, or the
    MLP head's output width.
    """

    def __init__(self, config: TimmConvNextConfig):
        super().__init__()
        self.config = config
        dims, eps = config.dims, config.norm_eps
        self.width = self.token_width = config.output_width
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], kernel_size=config.patch_size, stride=config.patch_size),
                                  LayerNorm2d(dims[0], eps=eps))
        rates = stage_drop_path_rates(config.drop_path, config.depths)
        self.stages = nn.ModuleList(
            DownsampledStage(nn.Identity() if index == 0 else convnext_downsample(dims[index - 1], dims[index], eps),
                             [ConvNextBlock(dims[index], kernel_size=config.kernel_size, norm_eps=eps,
                                            layer_scale=config.layer_scale, drop_path=rate) for rate in rates[index]])
            for index in range(len(dims)))
        self.head_norm = nn.LayerNorm(dims[-1], eps=eps)
        self.head = build_head(config, dims[-1])
        for module in self.modules():  # timm's initialisation
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def trunk_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] -> the last stage's cells [B, G*G, C] (no copy when channels-last)."""
        check_images(images, self.config.image_size)
        features = self.stem(images)
        for stage in self.stages:
            features = stage(features)
        return features.permute(0, 2, 3, 1).flatten(1, 2)

    def pooled_norm(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_norm(x)

    def parameter_groups(self) -> list[list[GroupItem]]:
        """Locking groups as timm's group matcher counts ConvNeXt's: the stem, each block (a stage's
        downsampling layer with its first block), the head norm. The MLP head is open_clip's
        `visual.head`, which its lock leaves trainable: in no group."""
        return [[self.stem], *self.stage_groups(), [self.head_norm]]


def read(vision: dict, context: OpenClipContext) -> TimmConvNextConfig:
    """As open_clip's TimmModel builds the tower: timm's ConvNeXt arguments for the model, then the
    head options (`timm_heads.read_head`)."""
    name, arguments = timm_arguments(vision, KIND, BUILT_AT)
    if not isinstance(arguments["kernel_sizes"], int):
        refuse_option(name, KIND, "kernel_sizes", arguments["kernel_sizes"])
    eps = arguments["norm_eps"]
    return TimmConvNextConfig(timm_model_name=name, image_size=image_size(vision.get("image_size", 224)),
                              depths=list(arguments["depths"]), dims=list(arguments["dims"]),
                              kernel_size=arguments["kernel_sizes"], patch_size=arguments["patch_size"],
                              layer_scale=arguments["ls_init_value"], norm_eps=TIMM_NORM_EPS if eps is None else eps,
                              **read_head(vision, context, KIND))


def write(vision: TimmConvNextConfig, context: OpenClipContext) -> dict:
    """The section naming `vision.timm_model_name`; refused when timm's model is not this tower."""
    return write_section(vision, context, KIND, vision.image_size, read)


def open_clip_rules(vision: TimmConvNextConfig, prefix: str) -> list[KeyRule]:
    trunk, block = prefix + "trunk.", r"vision_tower\.stages\.(\d+)\.blocks\.(\d+)\."
    return [
        rule(r"vision_tower\.stem\.(\d)\." + PARAMETER, trunk + "stem.{0}.{param}"),
        rule(r"vision_tower\.stages\.(\d+)\.downsample\.(\d)\." + PARAMETER,
             trunk + "stages.{0}.downsample.{1}.{param}"),
        *renamed(block, trunk + "stages.{0}.blocks.{1}.", {"depthwise.": "conv_dw", "norm.": "norm",
                                                           "mlp.fc.": "mlp.fc1", "mlp.proj.": "mlp.fc2",
                                                           "scale.gamma": "gamma"}),
        rule(r"vision_tower\.head_norm\." + PARAMETER, trunk + "head.norm.{param}"),
        *head_rules(prefix),
    ]


FAMILY = timm_family(
    kind=KIND, config=TimmConvNextConfig, build=TimmConvNext, fsdp_units=stage_blocks,
    summary="timm's ConvNeXt as open_clip wraps it (visual.trunk), with open_clip's linear or MLP head",
    read=read, write=write, rules=open_clip_rules, projection_locked=projection_locked,
    lora_targets=lambda vision: ("mlp.fc", "mlp.proj"))  # the blocks' pointwise MLPs (no attention)
