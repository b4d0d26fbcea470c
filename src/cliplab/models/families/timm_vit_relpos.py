"""Tower family "timm_vit_relpos": timm's VisionTransformerRelPos as open_clip wraps it
(`visual.trunk`), e.g. open_clip's `vit_relpos_medium_patch16_cls_224`. A ViT without position
embeddings: every block adds its own relative position bias to the attention logits, an MLP of the
log-spaced offsets between patches (`layers.relative_position`, timm's `RelPosMlp`); layer scale
(timm's default 1e-6), an optional class token, final norm on the tokens or after pooling, pooling
by the class token or the mean of the patch tokens. Conversion and locking as the "timm_vit"
family's (`families.timm_trunk`, and the block layout of `families.timm_vit`).

    open_clip vision_cfg                       TimmVitRelPosConfig
    timm_model_name                            timm_model_name, and from timm's arguments: img_size,
                                               patch_size, embed_dim, depth, num_heads, mlp_ratio,
                                               qkv_bias, init_values, class_token, fc_norm,
                                               rel_pos_dim (position_width; None: timm's 128)
    timm_pool / timm_proj / timm_drop_path     as the "timm_vit" family's

    cliplab                                    open_clip
    vision_tower.patch_embedding               visual.trunk.patch_embed.proj
    vision_tower.class_embedding [W]           visual.trunk.cls_token [1, 1, W]
    vision_tower.transformer.blocks.N          visual.trunk.blocks.N (as timm_vit's blocks, and
      .relative_position.fc / .proj            attn.rel_pos.mlp.fc1 / fc2)
    vision_tower.norm / fc_norm                visual.trunk.norm / fc_norm
    image_projection                           visual.head.proj (timm_classifier: visual.trunk.head)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from cliplab.models.families import timm_trunk, timm_vit
from cliplab.models.families.spec import OpenClipContext, each_transformer_block
from cliplab.models.key_rules import KeyRule, renamed
from cliplab.models.layers import BlockStack, init_transformer_weights
from cliplab.models.layers.drop_path import drop_path_rates
from cliplab.models.layers.relative_position import RelativePositionBlock
from cliplab.models.timm_models import timm_constructor_args
from cliplab.models.tower_configs import check_positive_int
from cliplab.models.towers.locking import GroupItem
from cliplab.models.towers.vision_transformer import check_images

KIND = "timm_vit_relpos"
POOLS = ("token", "avg")
TIMM_POSITION_WIDTH = 128  # RelPosMlp's hidden width when rel_pos_dim is None
BUILT_AT = {
    "in_chans": 3, "qk_norm": False, "rel_pos_type": "mlp", "shared_rel_pos": False, "drop_rate": 0.0,
    "proj_drop_rate": 0.0, "attn_drop_rate": 0.0, "embed_layer": "timm.layers.patch_embed.PatchEmbed",
    "norm_layer": None, "act_layer": None, "block_fn": "timm.models.vision_transformer_relpos.RelPosBlock",
}


@dataclass(kw_only=True)
class TimmVitRelPosConfig(timm_vit.TimmTowerConfig):
    """timm's VisionTransformerRelPos (see the module docstring). The fields as
    `timm_vit.TimmTowerConfig`'s, with timm's defaults for this class (layer scale 1e-6, no class
    token, mean pooling; pool "token" or "avg"), and position_width: the hidden width of each
    block's relative position MLP."""

    KIND: ClassVar[str] = KIND
    POOLS: ClassVar[tuple[str, ...]] = POOLS
    kind: str = KIND
    layer_scale: float | None = 1e-6
    class_token: bool = False
    pool: str = "avg"
    position_width: int = TIMM_POSITION_WIDTH

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("vision.position_width", self.position_width)


class TimmRelPosVisionTransformer(nn.Module):
    """images [B, 3, S, S] float -> pooled [B, W] and patch tokens [B, P, W], P = (S / patch)^2.

    Patch embedding (a strided conv with bias), the class token first (when present), no absolute
    positions, blocks with their own relative position bias, the final norm on every token (or,
    with fc_norm, after pooling), pooling by the class token or the mean of the patch tokens.
    """

    def __init__(self, config: TimmVitRelPosConfig):
        super().__init__()
        self.config = config
        self.width = self.token_width = width = config.width
        self.patch_embedding = nn.Conv2d(3, width, kernel_size=config.patch_size, stride=config.patch_size)
        self.class_embedding = nn.Parameter(torch.empty(width)) if config.class_token else None
        self.transformer = BlockStack([
            RelativePositionBlock(width, config.heads, config.mlp_ratio, grid_size=config.grid_size,
                                  prefix_tokens=int(config.class_token), position_width=config.position_width,
                                  norm_eps=config.norm_eps, layer_scale=config.layer_scale,
                                  qkv_bias=config.qkv_bias, drop_path=rate)
            for rate in drop_path_rates(config.drop_path, config.layers)])
        self.norm = nn.Identity() if config.fc_norm else nn.LayerNorm(width, eps=config.norm_eps)
        self.fc_norm = nn.LayerNorm(width, eps=config.norm_eps) if config.fc_norm else nn.Identity()
        if self.class_embedding is not None:
            nn.init.normal_(self.class_embedding, std=1e-6)
        init_transformer_weights(self.transformer, width)

    def forward_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, 3, S, S] -> (pooled [B, W], patch tokens [B, P, W])."""
        check_images(images, self.config.image_size)
        tokens = self.patch_embedding(images).flatten(2).transpose(1, 2)  # [B, P, W]
        if self.class_embedding is not None:
            tokens = torch.cat((self.class_embedding.to(tokens.dtype).expand(tokens.shape[0], 1, -1), tokens), dim=1)
        hidden = self.norm(self.transformer(tokens))
        patch_tokens = hidden[:, 1:] if self.class_embedding is not None else hidden
        return self.fc_norm(timm_vit.pool_tokens(self.config.pool, hidden, patch_tokens, None)), patch_tokens

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)[0]

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)[1]

    def parameter_groups(self) -> list[list[GroupItem]]:
        """Locking groups as timm's group matcher counts them (`timm_trunk.timm_groups`; the stem is
        the class token and the patch embedding)."""
        stem: list[GroupItem] = [self.patch_embedding]
        if self.class_embedding is not None:
            stem.append(self.class_embedding)
        return timm_trunk.timm_groups(stem, list(self.transformer.blocks), self.norm, [self.fc_norm],
                                    self.config.timm_classifier)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable


def read(vision: dict, context: OpenClipContext) -> TimmVitRelPosConfig:
    """As open_clip's TimmModel builds the tower from timm's arguments for the model."""
    name = vision["timm_model_name"]
    arguments = timm_constructor_args(name)
    for option, value in BUILT_AT.items():
        if arguments[option] != value:
            timm_trunk.refuse_option(name, KIND, option, arguments[option])
    options = timm_trunk.read_trunk_options(vision, KIND, arguments)
    if options["pool"] not in POOLS:
        timm_trunk.refuse_option(name, KIND, "global_pool", options["pool"])
    return TimmVitRelPosConfig(timm_model_name=name, patch_size=arguments["patch_size"], width=arguments["embed_dim"],
                               layers=arguments["depth"], heads=arguments["num_heads"],
                               mlp_ratio=arguments["mlp_ratio"], qkv_bias=arguments["qkv_bias"],
                               layer_scale=arguments["init_values"], class_token=arguments["class_token"],
                               position_width=arguments["rel_pos_dim"] or TIMM_POSITION_WIDTH, **options)


def write(vision: TimmVitRelPosConfig, context: OpenClipContext) -> dict:
    """The section naming `vision.timm_model_name`; refused when timm's model is not this config."""
    timm_trunk.check_exportable(vision.timm_model_name, KIND)
    return timm_trunk.check_written(vision, timm_trunk.write_trunk_options(vision),
                                    lambda values: read(values, context))


def open_clip_rules(vision: TimmVitRelPosConfig, prefix: str) -> list[KeyRule]:
    trunk = prefix + "trunk."
    block, theirs = timm_trunk.OUR_BLOCKS, trunk + "blocks.{0}."
    return [*timm_trunk.trunk_embedding_rules(trunk), *timm_trunk.trunk_block_rules(block, theirs),
            *renamed(block, theirs, {"relative_position.fc.": "attn.rel_pos.mlp.fc1",
                                     "relative_position.proj.": "attn.rel_pos.mlp.fc2"}),
            *timm_trunk.trunk_head_rules(vision, prefix)]


FAMILY = timm_trunk.timm_family(
    kind=KIND, config=TimmVitRelPosConfig, build=TimmRelPosVisionTransformer, fsdp_units=each_transformer_block,
    summary="timm's VisionTransformerRelPos as open_clip wraps it: relative position bias from an MLP in every block",
    read=read, write=write, rules=open_clip_rules)
