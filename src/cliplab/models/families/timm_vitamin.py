"""Tower family "timm_vitamin": ViTamin as open_clip wraps it (`TimmModel`: the timm model as
`visual.trunk`, open_clip's projection `visual.head.proj`), all 15 of open_clip's `ViTamin-*`
configs (`vitamin_small_224` to `vitamin_xlarge_384`, the `-LTT` ones with a wider latent). timm
builds ViTamin as its VisionTransformer behind a hybrid patch embedding: two MbConv stages
(`layers.mbconv.MbConvStages`, stride 16) instead of a patch conv, no class token, learned
positions (none in the XL models), blocks whose MLP is a GeGLU with its own LayerNorm
(`layers.geglu`), mean pooling and a final LayerNorm after it. The transformer half is the
"timm_vit" family's (`TimmTowerConfig`, `pool_tokens`), and what open_clip decides around the
trunk (and timm's block names, `trunk_block_rules`) is `families.timm_trunk`'s.

    open_clip vision_cfg                       TimmVitaminConfig
    timm_model_name                            timm_model_name, and from timm's arguments: embed_dim
                                               (width), depth (layers), num_heads (heads), mlp_ratio,
                                               pos_embed (positions: "learn" or "none"), and from the
                                               MbConvStages timm records: stem_widths, stem_depths
    image_size                                 image_size (timm's img_size; without positions any
                                               multiple of 16: ViTamin-XL-384 reads 256)
    timm_pool ("" keeps timm's "avg")          pool "avg"
    timm_proj "linear" (+ timm_proj_bias)      projection "linear" / "linear_bias"
    timm_drop_path                             drop_path (the transformer blocks')

    cliplab                                    open_clip
    vision_tower.patch_embedding.X             visual.trunk.patch_embed.backbone.X (timm's names:
                                               stem, stages.S.J, pool)
    vision_tower.position_embedding [N, W]     visual.trunk.pos_embed [1, N, W]
    vision_tower.transformer.blocks.N          visual.trunk.blocks.N (as timm_vit's blocks; the MLP
      .mlp.norm / gate / fc / proj               mlp.norm / w0 / w1 / w2)
    vision_tower.fc_norm                       visual.trunk.fc_norm
    image_projection                           visual.head.proj

Locking follows open_clip's `TimmModel.lock`: timm's VisionTransformer groups (the MbConv stem with
the positions; each block; fc_norm), `visual.head` outside them stays trainable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from cliplab.models.families.open_clip_sections import image_size
from cliplab.models.families.position_rules import grid_positions
from cliplab.models.families.spec import OpenClipContext
from cliplab.models.families.timm_trunk import (OUR_BLOCKS, check_exportable, check_written, read_trunk_options,
                                                refuse_option, timm_family, timm_groups, trunk_block_rules,
                                                trunk_head_rules, write_trunk_options)
from cliplab.models.families.timm_vit import BUILT_AT as TIMM_VIT_BUILT_AT
from cliplab.models.families.timm_vit import TimmTowerConfig, pool_tokens
from cliplab.models.key_rules import KeyRule, renamed, rule
from cliplab.models.layers import BlockStack, init_transformer_weights, mlp_hidden_width
from cliplab.models.layers.drop_path import drop_path_rates
from cliplab.models.layers.geglu import GeGluBlock
from cliplab.models.layers.mbconv import STRIDE, MbConvStages
from cliplab.models.timm_models import timm_constructor_args
from cliplab.models.towers.locking import GroupItem
from cliplab.models.towers.vision_transformer import check_images

KIND = "timm_vitamin"
POOLS = ("avg",)
HYBRID_EMBED = "timm.layers.hybrid_embed.HybridEmbed"
MBCONV_STAGES = "timm.models.vitamin.MbConvStages"
POSITIONS = {"learn": True, "none": False}  # timm's pos_embed -> positions
# timm's VisionTransformer arguments this family builds only at these values (timm_vit's, with
# ViTamin's MLP, hybrid embedding and optional positions).
BUILT_AT = {**{option: value for option, value in TIMM_VIT_BUILT_AT.items() if option not in ("pos_embed", "mlp_layer")},
            "mlp_layer": "timm.models.vitamin.GeGluMlp", "patch_size": 1, "class_token": False, "qkv_bias": True,
            "init_values": None, "pre_norm": False, "no_embed_class": False, "norm_layer": None, "act_layer": None}
STEM_STAGES = 2


@dataclass(kw_only=True)
class TimmVitaminConfig(TimmTowerConfig):
    """timm's ViTamin (see the module docstring); the shared fields as `TimmTowerConfig`'s, with
    ViTamin's defaults (patch_size 16: the MbConv stages' stride; no class token; mean pooling and
    fc_norm; LayerNorm eps 1e-6; MLP ratio 2).

    stem_widths: the MbConv stem's and its two stages' widths (the stem's is the first stage's).
    stem_depths: the MbConv blocks of each stage. positions: learned position embeddings (timm's
    pos_embed "learn"; the XL models have none).
    """

    KIND: ClassVar[str] = KIND
    POOLS: ClassVar[tuple[str, ...]] = POOLS
    kind: str = KIND
    patch_size: int = STRIDE
    mlp_ratio: float = 2.0
    class_token: bool = False
    pool: str = "avg"
    fc_norm: bool = True
    stem_widths: list[int]
    stem_depths: list[int]
    positions: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("stem_widths", "stem_depths"):
            values = getattr(self, name)
            if isinstance(values, tuple):
                setattr(self, name, values := list(values))
            if not isinstance(values, list) or len(values) != STEM_STAGES or not all(
                    isinstance(value, int) and not isinstance(value, bool) and value > 0 for value in values):
                raise ValueError(f"vision.{name} must be a list of {STEM_STAGES} positive ints, got {values!r}")
        if self.patch_size != STRIDE or self.class_token:
            raise ValueError(f"vision.patch_size must be {STRIDE} (the MbConv stages' stride) and vision.class_token "
                             f"False, got {self.patch_size} and {self.class_token}")
        if self.image_size % STRIDE:
            raise ValueError(f"vision.image_size must be a multiple of {STRIDE}, got {self.image_size}")
        if not isinstance(self.positions, bool):
            raise ValueError(f"vision.positions must be a bool, got {self.positions!r}")


class TimmVitaminTransformer(nn.Module):
    """images [B, 3, S, S] float -> pooled [B, W] and patch tokens [B, P, W], P = (S / 16)^2.

    timm's VisionTransformer forward behind ViTamin's hybrid embedding: the MbConv stages' feature
    map as tokens, learned positions added (when present), pre-norm GeGLU blocks, the final norm on
    every token or (fc_norm) after pooling, mean pooling.
    """

    def __init__(self, config: TimmVitaminConfig):
        super().__init__()
        self.config = config
        self.width = self.token_width = width = config.width
        self.patch_embedding = MbConvStages(tuple(config.stem_widths), tuple(config.stem_depths), width)
        self.position_embedding = (nn.Parameter(torch.empty(config.grid_size ** 2, width)) if config.positions
                                   else None)
        self.transformer = BlockStack([
            GeGluBlock(width, config.heads, mlp_width=mlp_hidden_width(width, config.mlp_ratio, None),
                       norm_eps=config.norm_eps, layer_scale=config.layer_scale, qkv_bias=config.qkv_bias,
                       drop_path=rate)
            for rate in drop_path_rates(config.drop_path, config.layers)])
        self.norm = nn.Identity() if config.fc_norm else nn.LayerNorm(width, eps=config.norm_eps)
        self.fc_norm = nn.LayerNorm(width, eps=config.norm_eps) if config.fc_norm else nn.Identity()
        if self.position_embedding is not None:
            nn.init.normal_(self.position_embedding, std=0.02)
        init_transformer_weights(self.transformer, width)

    def forward_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, 3, S, S] -> (pooled [B, W], patch tokens [B, P, W])."""
        check_images(images, self.config.image_size)
        tokens = self.patch_embedding(images).flatten(2).transpose(1, 2)  # [B, P, W]
        if self.position_embedding is not None:
            tokens = tokens + self.position_embedding
        hidden = self.norm(self.transformer(tokens))
        return self.fc_norm(pool_tokens(self.config.pool, hidden, hidden, None)), hidden

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)[0]

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)[1]

    def parameter_groups(self) -> list[list[GroupItem]]:
        """Locking groups as timm's group matcher counts them (`timm_trunk.timm_groups`; the stem is
        the MbConv stages and the positions)."""
        stem: list[GroupItem] = [self.patch_embedding]
        if self.position_embedding is not None:
            stem.append(self.position_embedding)
        return timm_groups(stem, list(self.transformer.blocks), self.norm, [self.fc_norm],
                           self.config.timm_classifier)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each transformer block and each MbConv stage in backward (timm's does both)."""
        self.transformer.grad_checkpointing = self.patch_embedding.grad_checkpointing = enable


def _mbconv_stem(name: str, arguments: dict) -> tuple[list[int], list[int]]:
    """(stem_widths, stem_depths) of the MbConvStages timm records (as its repr) in the hybrid
    embedding; refused unless it is exactly the layout `layers.mbconv` builds."""
    embed_layer = arguments["embed_layer"]
    keywords = embed_layer.get("keywords", {}) if isinstance(embed_layer, dict) else {}
    backbone = keywords.get("backbone", {})
    if not (embed_layer.get("partial") == HYBRID_EMBED and isinstance(backbone, dict)
            and backbone.get("instance") == MBCONV_STAGES and keywords.get("proj") is False):
        refuse_option(name, KIND, "embed_layer", embed_layer)
    text = backbone["repr"]
    blocks = text.split("MbConvLNBlock(")[1:]
    starts = [index for index, block in enumerate(blocks) if "(shortcut): Downsample2d(" in block]
    widths = [int(re.search(r"\(conv3_1x1\): Conv2d\(\d+, (\d+),", blocks[start]).group(1)) for start in starts]
    stem = re.search(r"\(conv1\): Conv2d\(3, (\d+), kernel_size=\(3, 3\), stride=\(2, 2\), padding=\(1, 1\)\)", text)
    pool = re.search(r"\(proj\): Conv2d\((\d+), (\d+), kernel_size=\(3, 3\), stride=\(2, 2\), padding=\(1, 1\)\)",
                     text)
    expansions = re.findall(r"\(conv1_1x1\): Conv2d\(\d+, (\d+),.*?\(conv3_1x1\): Conv2d\(\d+, (\d+),", text, re.S)
    if (len(starts) != STEM_STAGES or starts[0] != 0 or stem is None or int(stem.group(1)) != widths[0]
            or pool is None or [int(pool.group(1)), int(pool.group(2))] != [widths[-1], arguments["embed_dim"]]
            or any(int(hidden) != 4 * int(out) for hidden, out in expansions) or len(expansions) != len(blocks)
            or text.count("eps=1e-06") != len(blocks) + 2):
        refuse_option(name, KIND, "embed_layer", f"an MbConvStages other than layers.mbconv's: {text[:80]}...")
    return widths, [end - start for start, end in zip(starts, starts[1:] + [len(blocks)])]


def read(vision: dict, context: OpenClipContext) -> TimmVitaminConfig:
    """As open_clip's TimmModel builds the tower from timm's arguments for the model. Without
    positions, timm's img_size does not constrain the tower: it takes open_clip's image size."""
    name = vision["timm_model_name"]
    arguments = timm_constructor_args(name)
    for option, value in BUILT_AT.items():
        if arguments[option] != value:
            refuse_option(name, KIND, option, arguments[option])
    if arguments["pos_embed"] not in POSITIONS:
        refuse_option(name, KIND, "pos_embed", arguments["pos_embed"])
    positions = POSITIONS[arguments["pos_embed"]]
    if not positions:
        arguments["img_size"] = vision.get("image_size", 224)
    options = read_trunk_options(vision, KIND, arguments)
    if options["pool"] not in POOLS:
        refuse_option(name, KIND, "global_pool", options["pool"])
    stem_widths, stem_depths = _mbconv_stem(name, arguments)
    return TimmVitaminConfig(timm_model_name=name, width=arguments["embed_dim"], layers=arguments["depth"],
                             heads=arguments["num_heads"], mlp_ratio=arguments["mlp_ratio"], stem_widths=stem_widths,
                             stem_depths=stem_depths, positions=positions, **options)


def write(vision: TimmVitaminConfig, context: OpenClipContext) -> dict:
    """The section naming `vision.timm_model_name`; refused when timm's model is not this config."""
    check_exportable(vision.timm_model_name, KIND)
    values = write_trunk_options(vision)
    if not vision.positions:
        values["image_size"] = image_size(vision.image_size)
    return check_written(vision, values, lambda section: read(section, context))


def open_clip_rules(vision: TimmVitaminConfig, prefix: str) -> list[KeyRule]:
    trunk, theirs = prefix + "trunk.", prefix + "trunk.blocks.{0}."
    return [
        rule(r"vision_tower\.patch_embedding\.(.+)", trunk + "patch_embed.backbone.{0}"),
        rule(r"vision_tower\.position_embedding", trunk + "pos_embed", transform="squeeze1"),
        *renamed(OUR_BLOCKS, theirs, {"mlp.norm.": "mlp.norm", "mlp.gate.": "mlp.w0", "mlp.fc.": "mlp.w1",
                                      "mlp.proj.": "mlp.w2"}),
        *trunk_block_rules(OUR_BLOCKS, theirs),
        *trunk_head_rules(vision, prefix),
    ]


def fsdp_units(tower: TimmVitaminTransformer) -> list[nn.Module]:
    """The MbConv stages, then the transformer blocks."""
    return [*tower.patch_embedding.stages, *tower.transformer.blocks]


FAMILY = timm_family(
    kind=KIND, config=TimmVitaminConfig, build=TimmVitaminTransformer, fsdp_units=fsdp_units,
    summary="timm's ViTamin as open_clip wraps it (visual.trunk): MbConv stages, then GeGLU transformer blocks",
    read=read, write=write, rules=open_clip_rules,
    resize_positions=grid_positions("position_embedding", lambda vision: 0,
                                    "no prefix rows (timm's set_input_size); the XL models have none"))
