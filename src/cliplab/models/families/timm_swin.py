"""Tower family "timm_swin": timm's SwinTransformer as open_clip wraps it (`TimmModel`: the timm
model as `visual.trunk`, then `visual.head`), built from cliplab's layers in timm's parameter
layout: open_clip's swin_base_patch4_window7_224.

Swin (Liu et al. 2021): a 4x4 stride-4 patch embedding with a LayerNorm, then stages of
`SwinBlock`s, attention inside 7x7 windows with a learned relative position bias, every second
block on windows shifted by half a window; each stage after the first opens with `PatchMerging`
(2x2 neighbourhoods to one token of twice the width). The last stage's tokens are layer-normalised
and pooled. No BatchNorm. The head and pooling options are open_clip's (`timm_heads`); the rest
are timm's facts for the model (`cliplab.models.timm_models`). The tower is built for its image
size (the windows and masks depend on the grid), as timm's with a fixed input size.

    open_clip vision_cfg / timm                TimmSwinConfig
    timm_model_name                            timm_model_name; img_size (= image_size),
                                               patch_size, embed_dim (width), depths, num_heads
                                               (heads), window_size, mlp_ratio, qkv_bias
    timm_pool, timm_proj, timm_proj_bias,      pool, projection, mlp_head_*, head_dropout,
    timm_drop, timm_drop_path                  drop_path (None: timm's default 0.1; see timm_heads)

    cliplab                                    open_clip
    vision_tower.patch_embedding / patch_norm  visual.trunk.patch_embed.proj / .norm
    vision_tower.stages.I.downsample           visual.trunk.layers.I.downsample (norm, reduction)
    vision_tower.stages.I.blocks.J             visual.trunk.layers.I.blocks.J (norm_attn: norm1,
                                               attn.qkv, attn.out: attn.proj,
                                               attn.relative_position_bias:
                                               attn.relative_position_bias_table, norm_mlp: norm2,
                                               mlp.fc / mlp.proj: mlp.fc1 / fc2)
    vision_tower.norm                          visual.trunk.norm
    vision_tower.head (MLP head)               visual.head.mlp.fc1 / fc2
    image_projection                           visual.head.proj
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cliplab.errors import UnsupportedArchitectureError
from cliplab.models.families.open_clip_sections import image_size
from cliplab.models.families.spec import OpenClipContext, PositionsResize
from cliplab.models.families.timm_heads import (TimmHeadFields, build_head, head_rules, projection_locked, read_head,
                                                write_section)
from cliplab.models.families.timm_staged import (StagedTimmTower, check_stage_lists, stage_blocks,
                                                 stage_drop_path_rates, timm_arguments)
from cliplab.models.families.timm_trunk import (check_exportable, check_timm_model_name, refuse_option, timm_family,
                                                trunk_block_rules)
from cliplab.models.key_rules import PARAMETER, KeyRule, renamed, rule
from cliplab.models.layers.stage import DownsampledStage
from cliplab.models.layers.window_attention import PatchMerging, SwinBlock
from cliplab.models.timm_models import timm_constructor_args
from cliplab.models.tower_configs import (check_bool, check_choice, check_norm_eps, check_positive_int,
                                          check_positive_number)
from cliplab.models.towers.locking import GroupItem
from cliplab.models.towers.vision_transformer import check_images

KIND = "timm_swin"
TORCH_LAYER_NORM_EPS = 1e-5  # Swin's norm_layer is torch's nn.LayerNorm
# timm's SwinTransformer arguments this family builds only at these values.
BUILT_AT = {
    "in_chans": 3, "head_dim": None, "always_partition": False, "strict_img_size": True, "dynamic_img_size": False,
    "drop_rate": 0.0, "proj_drop_rate": 0.0, "attn_drop_rate": 0.0, "embed_layer": "timm.layers.patch_embed.PatchEmbed",
    "norm_layer": "torch.nn.modules.normalization.LayerNorm",
}


@dataclass(kw_only=True)
class TimmSwinConfig(TimmHeadFields):
    """timm's SwinTransformer (see the module docstring) and open_clip's head after it
    (`TimmHeadFields`).

    timm_model_name: the timm model the config describes (None for a config of cliplab's own sizes,
    which open_clip cannot load). image_size: input side S. patch_size: the patch embedding's.
    width: the first stage's width (each later stage doubles it). depths / heads: blocks and
    attention heads per stage. window: the attention window's side. mlp_ratio, qkv_bias: every
    block's. norm_eps: every LayerNorm's.
    """

    kind: str = KIND
    timm_model_name: str | None = None
    image_size: int
    patch_size: int = 4
    width: int = 96
    depths: list[int]
    heads: list[int]
    window: int = 7
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = TORCH_LAYER_NORM_EPS

    def __post_init__(self) -> None:
        check_choice("vision.kind", self.kind, (KIND,))
        check_timm_model_name(self.timm_model_name)
        for name in ("image_size", "patch_size", "width", "window"):
            check_positive_int(f"vision.{name}", getattr(self, name))
        if self.image_size % self.patch_size:
            raise ValueError(f"vision.image_size ({self.image_size}) must be divisible by "
                             f"vision.patch_size ({self.patch_size})")
        check_stage_lists(self, ("depths", "heads"))
        for index, (width, heads) in enumerate(zip(self.stage_widths, self.heads)):
            if width % heads:
                raise ValueError(f"stage {index}'s width {width} (vision.width * 2 ** {index}) must be divisible by "
                                 f"vision.heads[{index}] ({heads})")
        check_positive_number("vision.mlp_ratio", self.mlp_ratio)
        check_bool("vision.qkv_bias", self.qkv_bias)
        check_norm_eps("vision.norm_eps", self.norm_eps)
        self.check_head()

    @property
    def stage_widths(self) -> list[int]:
        return [self.width * 2 ** index for index in range(len(self.depths))]

    @property
    def output_width(self) -> int:
        return self.head_output_width(self.stage_widths[-1])


class TimmSwinTransformer(StagedTimmTower):
    """images [B, 3, S, S] float -> pooled [B, W] and tokens [B, G*G, W] (G: the last stage's grid
    side, tokens row-major).

    tokens = head(norm(last stage)), pooled = head(pool of norm(last stage)) as timm's head then
    open_clip's (see `StagedTimmTower`). W = the last stage's width, or the MLP head's output width.
    """

    def __init__(self, config: TimmSwinConfig):
        super().__init__()
        self.config = config
        widths, eps = config.stage_widths, config.norm_eps
        self.width = self.token_width = config.output_width
        self.patch_embedding = nn.Conv2d(3, widths[0], kernel_size=config.patch_size, stride=config.patch_size)
        self.patch_norm = nn.LayerNorm(widths[0], eps=eps)
        rates = stage_drop_path_rates(config.drop_path, config.depths)
        side, stages = config.image_size // config.patch_size, []
        for index, (width, heads) in enumerate(zip(widths, config.heads)):
            if index > 0:
                side = (side + 1) // 2
            blocks = [SwinBlock(width, heads, (side, side), config.window, shifted=number % 2 == 1,
                                mlp_ratio=config.mlp_ratio, qkv_bias=config.qkv_bias, norm_eps=eps, drop_path=rate)
                      for number, rate in enumerate(rates[index])]
            downsample = nn.Identity() if index == 0 else PatchMerging(widths[index - 1], width, norm_eps=eps)
            stages.append(DownsampledStage(downsample, blocks))
        self.stages = nn.ModuleList(stages)
        self.norm = nn.LayerNorm(widths[-1], eps=eps)
        self.head = build_head(config, widths[-1])
        for module in self.modules():  # timm's initialisation of its Linear layers
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def trunk_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] -> the last stage's tokens, normalised [B, G*G, C]."""
        check_images(images, self.config.image_size)
        grid = self.patch_norm(self.patch_embedding(images).permute(0, 2, 3, 1))  # [B, H, W, C]
        for stage in self.stages:
            grid = stage(grid)
        return self.norm(grid).flatten(1, 2)

    def parameter_groups(self) -> list[list[GroupItem]]:
        """Locking groups as timm's group matcher counts Swin's: the patch embedding, each block (a
        stage's patch merging with its first block), the final norm with the last block. The MLP
        head is open_clip's `visual.head`, which its lock leaves trainable: in no group."""
        groups = [[self.patch_embedding, self.patch_norm], *self.stage_groups()]
        groups[-1].append(self.norm)
        return groups


def read(vision: dict, context: OpenClipContext) -> TimmSwinConfig:
    """As open_clip's TimmModel builds the tower: timm's SwinTransformer arguments for the model
    (built at timm's own img_size, which the config's image_size must equal), then the head options
    (`timm_heads.read_head`)."""
    name, arguments = timm_arguments(vision, KIND, BUILT_AT)
    for option in ("embed_dim", "window_size", "mlp_ratio"):
        if isinstance(arguments[option], (list, tuple)):
            refuse_option(name, KIND, option, arguments[option])
    side, timm_side = image_size(vision.get("image_size", 224)), image_size(arguments["img_size"])
    if side != timm_side:
        raise UnsupportedArchitectureError(f"vision_cfg.image_size={side} differs from timm's img_size {timm_side} "
                                           f"for {name!r} (open_clip builds the timm model at its own size)")
    return TimmSwinConfig(timm_model_name=name, image_size=side, patch_size=arguments["patch_size"],
                          width=arguments["embed_dim"], depths=list(arguments["depths"]),
                          heads=list(arguments["num_heads"]), window=arguments["window_size"],
                          mlp_ratio=arguments["mlp_ratio"], qkv_bias=arguments["qkv_bias"],
                          **read_head(vision, context, KIND))


def write(vision: TimmSwinConfig, context: OpenClipContext) -> dict:
    """The section naming `vision.timm_model_name`; refused when timm's model is not this tower."""
    check_exportable(vision.timm_model_name, KIND)
    timm_side = image_size(timm_constructor_args(vision.timm_model_name)["img_size"])
    return write_section(vision, context, KIND, timm_side, read)  # a differing image_size is listed there


def open_clip_rules(vision: TimmSwinConfig, prefix: str) -> list[KeyRule]:
    trunk, block = prefix + "trunk.", r"vision_tower\.stages\.(\d+)\.blocks\.(\d+)\."
    theirs = trunk + "layers.{0}.blocks.{1}."
    return [
        *renamed(r"vision_tower\.", trunk, {"patch_embedding.": "patch_embed.proj", "patch_norm.": "patch_embed.norm",
                                           "norm.": "norm"}),
        rule(r"vision_tower\.stages\.(\d+)\.downsample\.(norm|reduction)\." + PARAMETER,
             trunk + "layers.{0}.downsample.{1}.{param}"),
        *trunk_block_rules(block, theirs),
        rule(block + r"attn\.relative_position_bias", theirs + "attn.relative_position_bias_table"),
        *head_rules(prefix),
    ]


def _refuse_smaller_windows(state: dict[str, torch.Tensor], old: TimmSwinConfig, new: TimmSwinConfig,
                            sequence_resize) -> dict[str, torch.Tensor]:
    """Swin's relative position tables depend on the window only, which a stage narrows where its grid is
    smaller than the window (timm's rule). Larger images keep every table; a size that narrows one
    is refused (timm would resize the table with `resize_rel_pos_bias_table`)."""
    smallest = new.patch_size * new.window * 2 ** (len(new.depths) - 1)
    raise ValueError(f"vision.image_size {new.image_size}: a stage's grid becomes smaller than the {new.window}x"
                     f"{new.window} attention window, whose relative position tables would change shape "
                     f"({', '.join(sorted(state))}); cliplab does not resize them: use an image size of at least "
                     f"{smallest}, where every stage keeps its windows")


FAMILY = timm_family(
    kind=KIND, config=TimmSwinConfig, build=TimmSwinTransformer, fsdp_units=stage_blocks,
    summary="timm's SwinTransformer (shifted-window attention) as open_clip wraps it (visual.trunk)",
    read=read, write=write, rules=open_clip_rules, projection_locked=projection_locked,
    resize_positions=PositionsResize(
        rule=_refuse_smaller_windows, summary="nothing at sizes that keep every stage's window (larger ones); a "
        "size whose grid narrows a window is refused"))
