"""Tower family "timm_vit": timm's VisionTransformer as open_clip wraps it (`TimmModel`: the timm
model as `visual.trunk`, the projection as `visual.head.proj` or timm's own classifier
`visual.trunk.head`), built from cliplab's blocks in timm's parameter layout. The reference example
of a family in one module: config, tower, open_clip reader/writer, key rules, FSDP units and lock
groups, then `FAMILY`.

What it builds: every VisionTransformer of open_clip 3.3.0's configs. SigLIP and SigLIP2 (no class
token, attention-probe pooling "map", exact or tanh GELU), the medium GAP ViT (mean pooling, layer
scale, no qkv bias), MobileCLIP's ViTs (`vit_base_mci_224`: a convolutional stem and a class token
outside the positions; `vit_large_patch14_clip_224`: CLIP's norm before the blocks, LayerNorm eps
1e-5), with timm's classifier as the projection (open_clip's `timm_proj: null`) and stochastic
depth (`timm_drop_path`). An option no open_clip config uses (register tokens, q/k norms, dynamic
sizes, ...) is refused naming it. The facts of each timm model come from
`cliplab.models.timm_models` (timm's own constructor arguments, recorded by a script).

    open_clip vision_cfg                       TimmVitConfig
    timm_model_name                            timm_model_name, and from timm's arguments: img_size
                                               (= image_size), patch_size, embed_dim (width), depth
                                               (layers), num_heads (heads), mlp_ratio, qkv_bias,
                                               init_values (layer_scale), class_token, no_embed_class
                                               (not class_token_position), pre_norm (norm_pre),
                                               fc_norm, norm_layer (norm_eps), act_layer
                                               (activation), embed_layer (stem "patch" / "conv")
    timm_pool ("" keeps timm's global_pool)    pool "token" / "avg" / "map"
    timm_proj "linear" / "none" / null         projection "linear" or "linear_bias" / "none" /
    (+ timm_proj_bias)                         "linear_bias" with timm_classifier
    timm_drop_path                             drop_path

    cliplab                                    open_clip
    vision_tower.patch_embedding               visual.trunk.patch_embed.proj
      (stem "conv": .conv1/.norm1/.conv2/      visual.trunk.patch_embed.backbone.0.conv / 0.bn /
      .norm2/.conv3)                           1.conv / 1.bn / 2.conv)
    vision_tower.class_embedding [W]           visual.trunk.cls_token [1, 1, W]
    vision_tower.position_embedding [N, W]     visual.trunk.pos_embed [1, N, W]
    vision_tower.norm_pre                      visual.trunk.norm_pre
    vision_tower.transformer.blocks.N          visual.trunk.blocks.N (norm1, attn.qkv, attn.proj,
                                               ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma)
    vision_tower.norm / fc_norm                visual.trunk.norm / fc_norm
    vision_tower.pooler (probe [W], attn.      visual.trunk.attn_pool (latent [1, 1, W], q, kv,
      query/key_value/out, norm, mlp)          proj, norm, mlp.fc1/fc2)
    image_projection                           visual.head.proj (timm_classifier: visual.trunk.head)

What open_clip's TimmModel decides around the timm model (pooling, projection, names, locking) is
`families.timm_trunk`'s, shared with the other timm families. Locking follows `TimmModel.lock`:
timm's parameter groups (stem; each block, the last with the final norm; then fc_norm, the
attention pool and timm's classifier), and open_clip's `visual.head` outside them, so it stays
trainable (`timm_trunk.projection_locked`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from cliplab.models.families.position_rules import grid_positions
from cliplab.models.families.spec import OpenClipContext, each_transformer_block
from cliplab.models.families.timm_trunk import (ACTIVATIONS, OUR_BLOCKS, TIMM_LAYER_NORM_EPS, attention_pool_rules,
                                                TimmVitSizes, check_exportable, check_timm_model_name, check_written,
                                                read_trunk_options,
                                                refuse_option, timm_activation, timm_family, timm_groups,
                                                timm_norm_eps, trunk_block_rules, trunk_embedding_rules,
                                                trunk_head_rules, write_trunk_options)
from cliplab.models.key_rules import NORM, PARAMETER, KeyRule, rule
from cliplab.models.layers import (BlockStack, ConvStem, ProbePooler, TransformerBlock, init_transformer_weights,
                                   mlp_hidden_width)
from cliplab.models.layers.conv_stem import CONV_STEM_STRIDE
from cliplab.models.layers.drop_path import drop_path_rates
from cliplab.models.timm_models import timm_constructor_args
from cliplab.models.tower_configs import (PROJECTIONS, check_bool, check_choice, check_heads, check_norm_eps,
                                          check_optional_number, check_positive_int, check_positive_number,
                                          check_probability)
from cliplab.models.towers.locking import GroupItem
from cliplab.models.towers.vision_transformer import check_images

KIND = "timm_vit"
POOLS = ("token", "avg", "map")
STEMS = ("patch", "conv")
PATCH_EMBED = "timm.layers.patch_embed.PatchEmbed"
HYBRID_EMBED = "timm.layers.hybrid_embed.HybridEmbed"
CONV_STEM = "timm.models.vision_transformer_hybrid.ConvStem"
# timm's VisionTransformer arguments this family builds only at these values.
BUILT_AT = {
    "in_chans": 3, "qk_norm": False, "scale_attn_norm": False, "scale_mlp_norm": False, "proj_bias": True,
    "pos_embed": "learn", "reg_tokens": 0, "final_norm": True, "pool_include_prefix": False,
    "dynamic_img_size": False, "dynamic_img_pad": False, "drop_rate": 0.0, "pos_drop_rate": 0.0,
    "patch_drop_rate": 0.0, "proj_drop_rate": 0.0, "attn_drop_rate": 0.0, "embed_norm_layer": None,
    "block_fn": "timm.models.vision_transformer.Block", "mlp_layer": "timm.layers.mlp.Mlp",
    "attn_layer": "timm.layers.attention.Attention",
}


@dataclass(kw_only=True)
class TimmTowerConfig(TimmVitSizes):
    """What the configs of timm's ViT families share (this one's and "timm_vit_relpos"'s), with its
    checks (ValueError naming the dotted key); a subclass sets KIND, POOLS and the `kind` default.

    The sizes as `timm_trunk.TimmVitSizes`'. qkv_bias, layer_scale (timm's init_values), class_token:
    timm's. pool: "token" (the class token), "avg" (the mean of the patch tokens) or "map" (an
    attention probe over the patch tokens). fc_norm: the final LayerNorm after pooling instead of
    on every token. norm_eps: every LayerNorm's. drop_path: stochastic depth at the last block (0
    at the first, linear between). projection: into the shared latent ("linear", "linear_bias" or
    "none"). timm_classifier: the projection is timm's own classifier inside the trunk (open_clip's
    `timm_proj: null`; needs "linear_bias").
    """

    KIND: ClassVar[str]
    POOLS: ClassVar[tuple[str, ...]]
    qkv_bias: bool = True
    layer_scale: float | None = None
    class_token: bool = True
    pool: str = "token"
    fc_norm: bool = False
    norm_eps: float = TIMM_LAYER_NORM_EPS
    drop_path: float = 0.0
    projection: str = "linear"
    timm_classifier: bool = False

    def __post_init__(self) -> None:
        check_choice("vision.kind", self.kind, (self.KIND,))
        check_timm_model_name(self.timm_model_name)
        for name in ("image_size", "patch_size", "width", "layers"):
            check_positive_int(f"vision.{name}", getattr(self, name))
        check_heads("vision", self.width, self.heads)
        if self.image_size < self.patch_size:
            raise ValueError(f"vision.image_size ({self.image_size}) must be at least vision.patch_size "
                             f"({self.patch_size})")
        check_positive_number("vision.mlp_ratio", self.mlp_ratio)
        for name in ("qkv_bias", "class_token", "fc_norm", "timm_classifier"):
            check_bool(f"vision.{name}", getattr(self, name))
        check_optional_number("vision.layer_scale", self.layer_scale)
        check_choice("vision.pool", self.pool, self.POOLS)
        if self.pool == "token" and not self.class_token:
            raise ValueError("vision.pool='token' needs vision.class_token=True")
        check_norm_eps("vision.norm_eps", self.norm_eps)
        check_probability("vision.drop_path", self.drop_path)
        check_choice("vision.projection", self.projection, PROJECTIONS)
        if self.timm_classifier and self.projection != "linear_bias":
            raise ValueError(f"vision.timm_classifier=True needs vision.projection='linear_bias' (timm's "
                             f"classifier has a bias), got {self.projection!r}")

    @property
    def output_width(self) -> int:
        return self.width

    @property
    def grid_size(self) -> int:
        """Patches per side; the strided conv leaves out the last image_size % patch_size pixels,
        as timm's does (ViT-SO400M-14-SigLIP-384: 27 patches of 14 cover 378 of 384)."""
        return self.image_size // self.patch_size


@dataclass(kw_only=True)
class TimmVitConfig(TimmTowerConfig):
    """timm's VisionTransformer (see the module docstring); the shared fields as `TimmTowerConfig`'s
    (patch_size 16 for the conv stem, its stride).

    class_token_position: the position embedding has a row for the class token, added after it is
    prepended (timm's `no_embed_class=False`); False adds the positions to the patches first.
    norm_pre: a LayerNorm before the blocks (and no bias in the patch embedding). activation: the
    MLPs' ("gelu" or "gelu_tanh"). stem: "patch" (one strided conv) or "conv" (MobileCLIP's
    `layers.ConvStem`).
    """

    KIND: ClassVar[str] = KIND
    POOLS: ClassVar[tuple[str, ...]] = POOLS
    kind: str = KIND
    class_token_position: bool = True
    norm_pre: bool = False
    activation: str = "gelu"
    stem: str = "patch"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("class_token_position", "norm_pre"):
            check_bool(f"vision.{name}", getattr(self, name))
        if not self.class_token_position and not self.class_token:
            raise ValueError("vision.class_token_position=False needs vision.class_token=True")
        check_choice("vision.activation", self.activation, tuple(ACTIVATIONS.values()))
        check_choice("vision.stem", self.stem, STEMS)
        if self.stem == "conv" and (self.patch_size != CONV_STEM_STRIDE or self.width % 4):
            raise ValueError(f"vision.stem='conv' needs vision.patch_size={CONV_STEM_STRIDE} (its stride) and "
                             f"vision.width divisible by 4, got {self.patch_size} and {self.width}")


class TimmVisionTransformer(nn.Module):
    """images [B, 3, S, S] float -> pooled [B, W] and patch tokens [B, P, W], P = (S / patch)^2.

    timm's VisionTransformer forward: patch embedding (a strided conv, or the conv stem), the class
    token first (when present), learned positions (on the class token too, or on the patches
    only), the optional norm before the blocks, pre-norm blocks, the final norm on every token (or,
    with fc_norm, after pooling), pooling by the class token, the mean of the patch tokens or an
    attention probe over them.
    """

    def __init__(self, config: TimmVitConfig):
        super().__init__()
        self.config = config
        self.width = self.token_width = width = config.width
        self.patch_embedding = (ConvStem(width) if config.stem == "conv" else nn.Conv2d(
            3, width, kernel_size=config.patch_size, stride=config.patch_size, bias=not config.norm_pre))
        self.class_embedding = nn.Parameter(torch.empty(width)) if config.class_token else None
        positions = config.grid_size ** 2 + int(config.class_token and config.class_token_position)
        self.position_embedding = nn.Parameter(torch.empty(positions, width))
        self.norm_pre = nn.LayerNorm(width, eps=config.norm_eps) if config.norm_pre else nn.Identity()
        self.transformer = BlockStack([
            TransformerBlock(width, config.heads, config.mlp_ratio, norm_eps=config.norm_eps,
                             layer_scale=config.layer_scale, qkv_bias=config.qkv_bias, activation=config.activation,
                             drop_path=rate)
            for rate in drop_path_rates(config.drop_path, config.layers)])
        self.norm = nn.Identity() if config.fc_norm else nn.LayerNorm(width, eps=config.norm_eps)
        self.pooler = (ProbePooler(width, config.heads, mlp_hidden_width(width, config.mlp_ratio, None),
                                   config.activation, config.norm_eps) if config.pool == "map" else None)
        self.fc_norm = nn.LayerNorm(width, eps=config.norm_eps) if config.fc_norm else nn.Identity()
        nn.init.normal_(self.position_embedding, std=0.02)
        if self.class_embedding is not None:
            nn.init.normal_(self.class_embedding, std=1e-6)
        init_transformer_weights(self.transformer, width)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] -> tokens [B, prefix + P, W] entering the blocks."""
        check_images(images, self.config.image_size)
        tokens = self.patch_embedding(images).flatten(2).transpose(1, 2)  # [B, P, W]
        if self.class_embedding is None:
            return self.norm_pre(tokens + self.position_embedding)
        if not self.config.class_token_position:
            tokens = tokens + self.position_embedding
        tokens = torch.cat((self.class_embedding.to(tokens.dtype).expand(tokens.shape[0], 1, -1), tokens), dim=1)
        if self.config.class_token_position:
            tokens = tokens + self.position_embedding
        return self.norm_pre(tokens)

    def forward_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, 3, S, S] -> (pooled [B, W], patch tokens [B, P, W])."""
        hidden = self.norm(self.transformer(self.embed(images)))
        patch_tokens = hidden[:, 1:] if self.class_embedding is not None else hidden
        return self.fc_norm(pool_tokens(self.config.pool, hidden, patch_tokens, self.pooler)), patch_tokens

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)[0]

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)[1]

    def parameter_groups(self) -> list[list[GroupItem]]:
        """Locking groups as timm's group matcher counts them (`timm_groups`)."""
        stem: list[GroupItem] = [self.patch_embedding, self.position_embedding, self.norm_pre]
        if self.class_embedding is not None:
            stem.append(self.class_embedding)
        return timm_groups(stem, list(self.transformer.blocks), self.norm, [self.fc_norm, self.pooler],
                           self.config.timm_classifier)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable


def pool_tokens(pool: str, hidden: torch.Tensor, patch_tokens: torch.Tensor, pooler: nn.Module | None
                ) -> torch.Tensor:
    """The pooled vector [B, W] of hidden [B, prefix + P, W]: its first token ("token"), the mean of
    the patch tokens [B, P, W] ("avg") or the attention probe over them ("map")."""
    if pool == "token":
        return hidden[:, 0]
    if pool == "avg":
        return patch_tokens.mean(dim=1)
    return pooler(patch_tokens)


def _stem(name: str, arguments: dict) -> str:
    """"patch" for timm's PatchEmbed, "conv" for vit_base_mci_224's HybridEmbed around its ConvStem."""
    embed_layer = arguments["embed_layer"]
    if embed_layer == PATCH_EMBED:
        return "patch"
    width = arguments["embed_dim"]
    backbone = embed_layer.get("keywords", {}).get("backbone", {}) if isinstance(embed_layer, dict) else {}
    expected = [f"Conv2d(3, {width // 4}, kernel_size=(4, 4), stride=(4, 4), bias=False)",
                f"Conv2d({width // 4}, {width // 4}, kernel_size=(2, 2), stride=(2, 2), bias=False)",
                f"Conv2d({width // 4}, {width}, kernel_size=(2, 2), stride=(2, 2))", "GELU(approximate='none')"]
    if (embed_layer.get("partial") == HYBRID_EMBED and backbone.get("instance") == CONV_STEM
            and embed_layer["keywords"].get("proj") is False and arguments["patch_size"] == 1
            and all(line in backbone.get("repr", "") for line in expected)):
        return "conv"
    refuse_option(name, KIND, "embed_layer", embed_layer)


def read(vision: dict, context: OpenClipContext) -> TimmVitConfig:
    """As open_clip's TimmModel builds the tower from timm's arguments for the model."""
    name = vision["timm_model_name"]
    arguments = timm_constructor_args(name)
    for option, value in BUILT_AT.items():
        if arguments[option] != value:
            refuse_option(name, KIND, option, arguments[option])
    options = read_trunk_options(vision, KIND, arguments)
    if options["pool"] not in POOLS:
        refuse_option(name, KIND, "global_pool", options["pool"])
    stem = _stem(name, arguments)
    patch_size = CONV_STEM_STRIDE if stem == "conv" else arguments["patch_size"]
    return TimmVitConfig(timm_model_name=name, patch_size=patch_size,
                         width=arguments["embed_dim"], layers=arguments["depth"], heads=arguments["num_heads"],
                         mlp_ratio=arguments["mlp_ratio"], qkv_bias=arguments["qkv_bias"],
                         layer_scale=arguments["init_values"], class_token=arguments["class_token"],
                         class_token_position=not (arguments["no_embed_class"] and arguments["class_token"]),
                         norm_pre=arguments["pre_norm"], norm_eps=timm_norm_eps(name, KIND, arguments["norm_layer"]),
                         activation=timm_activation(name, KIND, arguments["act_layer"]), stem=stem, **options)


def write(vision: TimmVitConfig, context: OpenClipContext) -> dict:
    """The section naming `vision.timm_model_name`; refused when timm's model is not this config."""
    check_exportable(vision.timm_model_name, KIND)
    return check_written(vision, write_trunk_options(vision), lambda values: read(values, context))


def open_clip_rules(vision: TimmVitConfig, prefix: str) -> list[KeyRule]:
    trunk, stem = prefix + "trunk.", r"vision_tower\.patch_embedding\."
    backbone = trunk + "patch_embed.backbone."
    return [
        rule(stem + r"conv1\.weight", backbone + "0.conv.weight"),
        rule(stem + r"norm1\." + NORM, backbone + "0.bn.{param}"),
        rule(stem + r"conv2\.weight", backbone + "1.conv.weight"),
        rule(stem + r"norm2\." + NORM, backbone + "1.bn.{param}"),
        rule(stem + r"conv3\." + PARAMETER, backbone + "2.conv.{param}"),
        *trunk_embedding_rules(trunk),
        *trunk_block_rules(OUR_BLOCKS, trunk + "blocks.{0}."),
        *attention_pool_rules(trunk),
        *trunk_head_rules(vision, prefix),
    ]


FAMILY = timm_family(
    kind=KIND, config=TimmVitConfig, build=TimmVisionTransformer, fsdp_units=each_transformer_block,
    summary="timm's VisionTransformer as open_clip wraps it (visual.trunk): SigLIP, SigLIP2, MobileCLIP ViTs, "
            "the medium GAP ViT",
    read=read, write=write, rules=open_clip_rules,
    resize_positions=grid_positions(
        "position_embedding", lambda vision: int(vision.class_token and vision.class_token_position),
        "a class token's row kept where the table has one (timm's set_input_size / resample_abs_pos_embed)"))
