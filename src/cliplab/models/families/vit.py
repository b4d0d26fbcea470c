"""Tower family "vit": cliplab's vision transformer (`towers.vision_transformer`, `VisionConfig`),
which is also open_clip's and OpenAI's own ViT and Hugging Face CLIP's and SigLIP's.

    open_clip vision_cfg                       VisionConfig
    head_width                                 heads = width / head_width
    no_ln_pre / final_ln_after_pool            norm_pre=False / final_norm="pooled"
    pool_type "tok" / "avg"                    pool "cls" / "mean" (a class token either way)
    attentional_pool                           pool "attention" with queries of width embed_dim
    ls_init_value                              layer_scale
    quick_gelu (top level)                     activation="quick_gelu"

    cliplab                                    open_clip
    vision_tower.patch_embedding               visual.conv1
    vision_tower.class_embedding / position_e. visual.class_embedding / positional_embedding
    vision_tower.norm_pre / norm_post          visual.ln_pre / ln_post
    vision_tower.transformer.blocks.N          visual.transformer.resblocks.N
    vision_tower.pooler (attentional pooler)   visual.attn_pool (query, ln_q, ln_k, attn)
    image_projection.weight [E, W]             visual.proj [W, E] (transposed)

    cliplab                                    Hugging Face (CLIPModel / SiglipModel)
    vision_tower.patch_embedding               vision_model.embeddings.patch_embedding
    vision_tower.class_embedding               vision_model.embeddings.class_embedding (CLIP)
    vision_tower.position_embedding            vision_model.embeddings.position_embedding.weight
    vision_tower.norm_pre / norm_post          vision_model.pre_layrnorm (CLIP; sic) / post_layernorm
    vision_tower.transformer.blocks.N          vision_model.encoder.layers.N
    vision_tower.pooler (probe head)           vision_model.head (probe (1, 1, D), attention
                                               in_proj, layernorm, mlp) (SigLIP)
    image_projection.weight                    visual_projection.weight (CLIP)
"""

from __future__ import annotations

from typing import Any

from cliplab.errors import UnsupportedArchitectureError
from cliplab.models.families.layouts import block_rules, encoder_rules, multihead_rules, probe_head_rules
from cliplab.models.families.open_clip_sections import (VISION_KEYS, check_known, check_supported, image_size,
                                                         mlp_ratio, norm_eps, norm_kwargs, refuse)
from cliplab.models.families.position_rules import grid_positions
from cliplab.models.families.spec import OpenClipContext, OpenClipForm, TowerFamily, each_transformer_block
from cliplab.models.key_rules import PARAMETER, KeyRule, rule
from cliplab.models.tower_configs import VisionConfig
from cliplab.models.towers.locking import open_clip_layout
from cliplab.models.towers.vision_transformer import VisionTransformer


def recognises(vision: dict) -> bool:
    """open_clip's own ViT: neither a timm model nor a ResNet (`layers` a list)."""
    return not vision.get("timm_model_name") and not isinstance(vision.get("layers"), (list, tuple))


def read(vision: dict, context: OpenClipContext) -> VisionConfig:
    check_known(vision, VISION_KEYS, "vision_cfg")
    check_supported(vision, "vision_cfg")
    pool_type = vision.get("pool_type", "tok")
    if pool_type not in ("tok", "avg"):
        raise UnsupportedArchitectureError(f"vision_cfg.pool_type={pool_type!r}: cliplab supports 'tok' and 'avg'")
    options: dict[str, Any] = {"pool": "cls" if pool_type == "tok" else "mean"}
    if vision.get("final_ln_after_pool", False):
        options["final_norm"] = "pooled"
    if vision.get("attentional_pool", False):
        if isinstance(vision["attentional_pool"], str):
            raise UnsupportedArchitectureError(f"vision_cfg.attentional_pool={vision['attentional_pool']!r}: "
                                               "cliplab supports the single attentional pooler (true)")
        options = {"pool": "attention", "final_norm": "pooled", "attention_pool_width": context.embed_dim,
                   "attention_pool_queries": vision.get("attn_pooler_queries", 256),
                   "attention_pool_heads": vision.get("attn_pooler_heads", 8)}
    width = vision.get("width", 768)
    return VisionConfig(kind="vit", image_size=image_size(vision.get("image_size", 224)), width=width,
                        layers=vision.get("layers", 12), heads=width // vision.get("head_width", 64),
                        patch_size=vision.get("patch_size", 16), mlp_ratio=vision.get("mlp_ratio", 4.0),
                        class_token=True, norm_pre=not vision.get("no_ln_pre", False),
                        layer_scale=vision.get("ls_init_value"), patch_dropout=vision.get("patch_dropout", 0.0),
                        activation=context.activation, norm_eps=norm_eps(vision, "vision_cfg"), **options)


def write(vision: VisionConfig, context: OpenClipContext) -> dict:
    for name, value, allowed in (("class_token", vision.class_token, True), ("patch_bias", vision.patch_bias, False)):
        if value != allowed:
            refuse(f"vision.{name}={value!r}")
    values = {"layers": vision.layers, "width": vision.width, "head_width": vision.width // vision.heads,
              "mlp_ratio": mlp_ratio("vision", vision), "patch_size": vision.patch_size,
              "image_size": vision.image_size, **norm_kwargs(vision.norm_eps)}
    if vision.layer_scale is not None:
        values["ls_init_value"] = vision.layer_scale
    if vision.patch_dropout:
        values["patch_dropout"] = vision.patch_dropout
    if not vision.norm_pre:
        values["no_ln_pre"] = True
    if vision.pool == "attention":
        if vision.pool_width != context.embed_dim or vision.projection != "linear":
            refuse("open_clip's attentional pooler has queries of width embed_dim and a linear projection")
        values.update(attentional_pool=True, attn_pooler_queries=vision.attention_pool_queries,
                      attn_pooler_heads=vision.attention_pool_heads)
        return values
    if vision.pool not in ("cls", "mean") or vision.projection != "linear":
        refuse(f"vision.pool={vision.pool!r} with projection={vision.projection!r} (open_clip pools the class "
               "token, the mean, or with its attentional pooler, and projects linearly without bias)")
    if vision.pool == "mean":
        values["pool_type"] = "avg"
    if vision.final_norm == "pooled":
        values["final_ln_after_pool"] = True
    return values


def open_clip_rules(vision: VisionConfig, prefix: str) -> list[KeyRule]:
    pooler = multihead_rules(r"vision_tower\.pooler\.attn", prefix + "attn_pool.attn",
                             same_width=vision.pool_width == vision.width)
    return [
        rule(r"vision_tower\.patch_embedding\." + PARAMETER, prefix + "conv1.{param}"),
        rule(r"vision_tower\.class_embedding", prefix + "class_embedding"),
        rule(r"vision_tower\.position_embedding", prefix + "positional_embedding"),
        rule(r"vision_tower\.norm_pre\." + PARAMETER, prefix + "ln_pre.{param}"),
        *block_rules(r"vision_tower\.transformer\.blocks\.(\d+)", prefix + "transformer.resblocks.{0}"),
        rule(r"vision_tower\.pooler\.query", prefix + "attn_pool.query"),
        rule(r"vision_tower\.pooler\.norm_query\." + PARAMETER, prefix + "attn_pool.ln_q.{param}"),
        rule(r"vision_tower\.pooler\.norm_context\." + PARAMETER, prefix + "attn_pool.ln_k.{param}"),
        *pooler,
        rule(r"vision_tower\.norm_post\." + PARAMETER, prefix + "ln_post.{param}"),
        rule(r"image_projection\.weight", prefix + "proj", transform="transpose"),
    ]


def hf_rules(vision: VisionConfig, model_type: str) -> list[KeyRule]:
    """CLIPModel's vision half with `visual_projection`, or SiglipModel's with its probe head."""
    embeddings = "vision_model.embeddings."
    rules = [
        rule(r"vision_tower\.patch_embedding\." + PARAMETER, embeddings + "patch_embedding.{param}"),
        rule(r"vision_tower\.class_embedding", embeddings + "class_embedding"),
        rule(r"vision_tower\.position_embedding", embeddings + "position_embedding.weight"),
        rule(r"vision_tower\.norm_pre\." + PARAMETER, "vision_model.pre_layrnorm.{param}"),
        *encoder_rules(r"vision_tower\.transformer\.blocks", "vision_model.encoder.layers"),
        rule(r"vision_tower\.norm_post\." + PARAMETER, "vision_model.post_layernorm.{param}"),
    ]
    if model_type == "clip":
        return rules + [rule(r"image_projection\.weight", "visual_projection.weight")]
    return rules + probe_head_rules(r"vision_tower\.pooler", "vision_model.head")


FAMILY = TowerFamily(
    kind="vit", side="vision", config=VisionConfig, build=VisionTransformer,
    summary="cliplab's ViT: open_clip's and OpenAI's own ViT, HF CLIP and SigLIP vision towers",
    lock_groups=open_clip_layout(VisionTransformer.parameter_groups), fsdp_units=each_transformer_block,
    open_clip=OpenClipForm(recognises=recognises, read=read, write=write,
                           activation=lambda vision: vision.activation, rules=open_clip_rules),
    hf_rules=hf_rules,
    resize_positions=grid_positions("position_embedding", lambda vision: int(vision.class_token),
                                    "the class token's row kept (open_clip's resize_pos_embed)"),
)
