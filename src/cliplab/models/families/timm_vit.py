"""Tower family "timm_vit": timm's VisionTransformer as open_clip wraps it (`TimmModel`: the timm
model as `visual.trunk`, the projection as `visual.head.proj`), built from cliplab's blocks in timm's
parameter layout. The reference example of a family in one module: config, tower, open_clip
reader/writer, key rules, FSDP units and lock groups, then `FAMILY`.

What it builds today: a plain ViT (learned positions, optional class token, LayerNorm eps 1e-6,
exact GELU, optional qkv bias and layer scale, final norm on the tokens or after pooling) pooled by
its class token or the mean of the patch tokens, e.g. open_clip's `vit_medium_patch16_gap_256`.
Any other timm option a model needs (MAP pooling, register tokens, hybrid patch embeddings, ...) is
refused naming the option, until this family grows it. The facts of each timm model come from
`cliplab.models.timm_models` (timm's own constructor arguments, recorded by a script).

    open_clip vision_cfg                       TimmVitConfig
    timm_model_name                            timm_model_name, and from timm's arguments: img_size
                                               (= image_size), patch_size, embed_dim (width), depth
                                               (layers), num_heads (heads), mlp_ratio, qkv_bias,
                                               init_values (layer_scale), class_token, fc_norm
    timm_pool ("" keeps timm's global_pool)    pool "token" / "avg"
    timm_proj "linear" / "none", timm_proj_bias projection "linear" or "linear_bias" / "none"

    cliplab                                    open_clip
    vision_tower.patch_embedding               visual.trunk.patch_embed.proj
    vision_tower.class_embedding [W]           visual.trunk.cls_token [1, 1, W]
    vision_tower.position_embedding [N, W]     visual.trunk.pos_embed [1, N, W]
    vision_tower.transformer.blocks.N          visual.trunk.blocks.N (norm1, attn.qkv, attn.proj,
                                               ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma)
    vision_tower.norm / fc_norm                visual.trunk.norm / fc_norm
    image_projection                           visual.head.proj
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from cliplab.errors import UnsupportedArchitectureError
from cliplab.models.families.open_clip_sections import VISION_KEYS, check_known, image_size, refuse
from cliplab.models.families.spec import OpenClipContext, OpenClipForm, TowerFamily
from cliplab.models.key_rules import PARAMETER, KeyRule, rule
from cliplab.models.layers import BlockStack, TransformerBlock, init_transformer_weights
from cliplab.models.timm_models import timm_constructor_args, timm_family_kind
from cliplab.models.tower_configs import (PROJECTIONS, check_bool, check_choice, check_heads, check_positive_int)
from cliplab.models.towers.locking import GroupItem, projection_with_last
from cliplab.models.towers.vision_transformer import check_images

KIND = "timm_vit"
POOLS = ("token", "avg")
TIMM_LAYER_NORM_EPS = 1e-6  # timm.layers.LayerNorm's default, VisionTransformer's norm
# timm's VisionTransformer arguments this family builds only at these values.
BUILT_AT = {
    "in_chans": 3, "qk_norm": False, "scale_attn_norm": False, "scale_mlp_norm": False, "proj_bias": True,
    "pos_embed": "learn", "no_embed_class": False, "reg_tokens": 0, "pre_norm": False, "final_norm": True,
    "pool_include_prefix": False, "dynamic_img_size": False, "dynamic_img_pad": False, "drop_rate": 0.0,
    "pos_drop_rate": 0.0, "patch_drop_rate": 0.0, "proj_drop_rate": 0.0, "attn_drop_rate": 0.0,
    "drop_path_rate": 0.0, "embed_layer": "timm.layers.patch_embed.PatchEmbed", "embed_norm_layer": None,
    "norm_layer": None, "act_layer": None, "block_fn": "timm.models.vision_transformer.Block",
    "mlp_layer": "timm.layers.mlp.Mlp", "attn_layer": "timm.layers.attention.Attention",
}
OPEN_CLIP_PROJECTIONS = {"linear": "linear", "none": "none"}


@dataclass(kw_only=True)
class TimmVitConfig:
    """timm's VisionTransformer (see the module docstring).

    timm_model_name: the timm model the config describes (what an open_clip export names; None
    for a config of cliplab's own, which open_clip cannot load). image_size, patch_size, width,
    layers, heads, mlp_ratio: as timm's img_size, patch_size, embed_dim, depth, num_heads,
    mlp_ratio. qkv_bias, layer_scale (timm's init_values), class_token: timm's. pool: "token"
    (the class token) or "avg" (the mean of the patch tokens). fc_norm: the final LayerNorm after
    pooling instead of on every token. norm_eps: every LayerNorm's. projection: into the shared
    latent ("linear", "linear_bias" or "none").
    """

    kind: str = KIND
    timm_model_name: str | None = None
    image_size: int
    patch_size: int = 16
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    layer_scale: float | None = None
    class_token: bool = True
    pool: str = "token"
    fc_norm: bool = False
    norm_eps: float = TIMM_LAYER_NORM_EPS
    projection: str = "linear"

    def __post_init__(self) -> None:
        check_choice("vision.kind", self.kind, (KIND,))
        if self.timm_model_name is not None and not isinstance(self.timm_model_name, str):
            raise ValueError(f"vision.timm_model_name must be a str or None, got {self.timm_model_name!r}")
        for name in ("image_size", "patch_size", "width", "layers"):
            check_positive_int(f"vision.{name}", getattr(self, name))
        check_heads("vision", self.width, self.heads)
        if self.image_size % self.patch_size:
            raise ValueError(f"vision.image_size ({self.image_size}) must be divisible by "
                             f"vision.patch_size ({self.patch_size})")
        if not isinstance(self.mlp_ratio, (int, float)) or self.mlp_ratio <= 0:
            raise ValueError(f"vision.mlp_ratio must be a positive number, got {self.mlp_ratio!r}")
        for name in ("qkv_bias", "class_token", "fc_norm"):
            check_bool(f"vision.{name}", getattr(self, name))
        if self.layer_scale is not None and not isinstance(self.layer_scale, (int, float)):
            raise ValueError(f"vision.layer_scale must be a number or None, got {self.layer_scale!r}")
        check_choice("vision.pool", self.pool, POOLS)
        if self.pool == "token" and not self.class_token:
            raise ValueError("vision.pool='token' needs vision.class_token=True")
        if not isinstance(self.norm_eps, (int, float)) or not 0 < self.norm_eps < 1:
            raise ValueError(f"vision.norm_eps must be a number in (0, 1), got {self.norm_eps!r}")
        check_choice("vision.projection", self.projection, PROJECTIONS)

    @property
    def output_width(self) -> int:
        return self.width

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size


class TimmVisionTransformer(nn.Module):
    """images [B, 3, S, S] float -> pooled [B, W] and patch tokens [B, P, W], P = (S / patch)^2.

    timm's VisionTransformer forward: patch embedding (a strided conv with bias), the class token
    first (when present), learned positions added to every token, pre-norm blocks, the final norm
    on every token (or, with fc_norm, after pooling), pooling by the class token or the mean of
    the patch tokens.
    """

    def __init__(self, config: TimmVitConfig):
        super().__init__()
        self.config = config
        self.width = self.token_width = width = config.width
        self.patch_embedding = nn.Conv2d(3, width, kernel_size=config.patch_size, stride=config.patch_size)
        self.class_embedding = nn.Parameter(torch.empty(width)) if config.class_token else None
        self.position_embedding = nn.Parameter(torch.empty(config.grid_size ** 2 + int(config.class_token), width))
        self.transformer = BlockStack([
            TransformerBlock(width, config.heads, config.mlp_ratio, norm_eps=config.norm_eps,
                             layer_scale=config.layer_scale, qkv_bias=config.qkv_bias)
            for _ in range(config.layers)])
        self.norm = nn.Identity() if config.fc_norm else nn.LayerNorm(width, eps=config.norm_eps)
        self.fc_norm = nn.LayerNorm(width, eps=config.norm_eps) if config.fc_norm else nn.Identity()
        nn.init.normal_(self.position_embedding, std=0.02)
        if self.class_embedding is not None:
            nn.init.normal_(self.class_embedding, std=1e-6)
        init_transformer_weights(self.transformer, width)

    def forward_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images [B, 3, S, S] -> (pooled [B, W], patch tokens [B, P, W])."""
        check_images(images, self.config.image_size)
        tokens = self.patch_embedding(images).flatten(2).transpose(1, 2)  # [B, P, W]
        if self.class_embedding is not None:
            tokens = torch.cat((self.class_embedding.expand(tokens.shape[0], 1, -1), tokens), dim=1)
        hidden = self.norm(self.transformer(tokens + self.position_embedding))
        patch_tokens = hidden[:, 1:] if self.class_embedding is not None else hidden
        pooled = hidden[:, 0] if self.config.pool == "token" else patch_tokens.mean(dim=1)
        return self.fc_norm(pooled), patch_tokens

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)[0]

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)[1]

    def parameter_groups(self) -> list[list[GroupItem]]:
        """Locking groups as timm's group matcher counts them: the embeddings, each block, the
        final norms."""
        embeddings: list[GroupItem] = [self.patch_embedding, self.position_embedding]
        if self.class_embedding is not None:
            embeddings.append(self.class_embedding)
        return [embeddings, *([block] for block in self.transformer.blocks), [self.norm, self.fc_norm]]

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable


def recognises(vision: dict) -> bool:
    return timm_family_kind(vision.get("timm_model_name")) == KIND


def _refuse_option(name: str, option: str, value) -> None:
    raise UnsupportedArchitectureError(
        f"vision_cfg.timm_model_name={name!r} (timm's VisionTransformer) needs {option}={value!r}, which the "
        f"timm tower family '{KIND}' does not build yet")


def read(vision: dict, context: OpenClipContext) -> TimmVitConfig:
    """As open_clip's TimmModel builds the tower: timm's arguments for the model, then its pool
    and projection options (a "none" projection passes `timm_pool` to timm's constructor, whose
    `global_pool` decides fc_norm; "linear" resets only the pooling after construction)."""
    check_known(vision, VISION_KEYS, "vision_cfg")
    name = vision["timm_model_name"]
    arguments = timm_constructor_args(name)
    for option, value in BUILT_AT.items():
        if arguments[option] != value:
            _refuse_option(name, option, arguments[option])
    for option in ("timm_drop", "timm_drop_path"):
        if vision.get(option):
            _refuse_option(name, option, vision[option])
    proj = vision.get("timm_proj", "linear")
    if proj not in OPEN_CLIP_PROJECTIONS:
        _refuse_option(name, "timm_proj", proj)
    pool = vision.get("timm_pool", "avg")
    constructor_pool = pool if proj == "none" else arguments["global_pool"]
    pool = pool or constructor_pool
    if pool not in POOLS:
        _refuse_option(name, "global_pool", pool)
    fc_norm = constructor_pool in ("avg", "avgmax", "max") if arguments["fc_norm"] is None else arguments["fc_norm"]
    side = image_size(vision.get("image_size", 224))
    timm_side = image_size(arguments["img_size"])
    if side != timm_side:
        raise UnsupportedArchitectureError(f"vision_cfg.image_size={side} differs from timm's img_size {timm_side} "
                                           f"for {name!r} (open_clip builds the timm model at its own size)")
    projection = OPEN_CLIP_PROJECTIONS[proj]
    if projection == "linear" and vision.get("timm_proj_bias", False):
        projection = "linear_bias"
    return TimmVitConfig(timm_model_name=name, image_size=side, patch_size=arguments["patch_size"],
                         width=arguments["embed_dim"], layers=arguments["depth"], heads=arguments["num_heads"],
                         mlp_ratio=arguments["mlp_ratio"], qkv_bias=arguments["qkv_bias"],
                         layer_scale=arguments["init_values"], class_token=arguments["class_token"], pool=pool,
                         fc_norm=bool(fc_norm), projection=projection)


def write(vision: TimmVitConfig, context: OpenClipContext) -> dict:
    """The section naming `vision.timm_model_name`; refused when timm's model is not this config
    (a config of cliplab's own sizes: open_clip builds timm towers by name only)."""
    name = vision.timm_model_name
    if not recognises({"timm_model_name": name}):
        refuse(f"vision.timm_model_name={name!r} is not a timm model of the family '{KIND}' (open_clip builds a "
               "timm tower by its timm model name)")
    values = {"timm_model_name": name, "timm_model_pretrained": False, "timm_pool": vision.pool,
              "timm_proj": "none" if vision.projection == "none" else "linear",
              "timm_proj_bias": vision.projection == "linear_bias",
              "image_size": image_size(timm_constructor_args(name)["img_size"])}
    timm_built = read(values, context)
    differences = [f"vision.{field.name}={getattr(vision, field.name)!r} (timm: {getattr(timm_built, field.name)!r})"
                   for field in fields(vision) if getattr(vision, field.name) != getattr(timm_built, field.name)]
    if differences:
        refuse(f"timm's {name} is not this tower: {', '.join(differences)}")
    return values


def open_clip_rules(vision: TimmVitConfig, prefix: str) -> list[KeyRule]:
    trunk, block = prefix + "trunk.", r"vision_tower\.transformer\.blocks\.(\d+)\."
    theirs = trunk + "blocks.{0}."
    return [
        rule(r"vision_tower\.patch_embedding\." + PARAMETER, trunk + "patch_embed.proj.{param}"),
        rule(r"vision_tower\.class_embedding", trunk + "cls_token", transform="squeeze2"),
        rule(r"vision_tower\.position_embedding", trunk + "pos_embed", transform="squeeze1"),
        rule(block + r"norm_attn\." + PARAMETER, theirs + "norm1.{param}"),
        rule(block + r"attn\.qkv\." + PARAMETER, theirs + "attn.qkv.{param}"),
        rule(block + r"attn\.out\." + PARAMETER, theirs + "attn.proj.{param}"),
        rule(block + r"scale_attn\.gamma", theirs + "ls1.gamma"),
        rule(block + r"norm_mlp\." + PARAMETER, theirs + "norm2.{param}"),
        rule(block + r"mlp\.fc\." + PARAMETER, theirs + "mlp.fc1.{param}"),
        rule(block + r"mlp\.proj\." + PARAMETER, theirs + "mlp.fc2.{param}"),
        rule(block + r"scale_mlp\.gamma", theirs + "ls2.gamma"),
        rule(r"vision_tower\.norm\." + PARAMETER, trunk + "norm.{param}"),
        rule(r"vision_tower\.fc_norm\." + PARAMETER, trunk + "fc_norm.{param}"),
        rule(r"image_projection\." + PARAMETER, prefix + "head.proj.{param}"),
    ]


def fsdp_units(tower: TimmVisionTransformer) -> list[nn.Module]:
    return list(tower.transformer.blocks)


FAMILY = TowerFamily(
    kind=KIND, side="vision", config=TimmVitConfig, build=TimmVisionTransformer,
    summary="timm's VisionTransformer as open_clip wraps it (visual.trunk); today: class-token or mean pooling",
    lock_groups=projection_with_last(TimmVisionTransformer.parameter_groups), fsdp_units=fsdp_units,
    # timm towers use exact GELU whatever open_clip's quick_gelu flag says.
    open_clip=OpenClipForm(recognises=recognises, read=read, write=write, activation=lambda vision: None,
                           rules=open_clip_rules),
)
