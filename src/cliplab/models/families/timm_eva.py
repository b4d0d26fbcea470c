"""Tower family "timm_eva": timm's Eva class (EVA01, EVA02 and Perception Encoder's PE-Core image
towers) as open_clip wraps it: the timm model as `visual.trunk`, its classifier `head` (a biased
Linear to embed_dim, open_clip's `timm_proj: null`) as the projection into the shared latent. The
tower is `towers.eva_transformer`, from `layers.eva_blocks`, `layers.rotary_2d` and `layers.swiglu`.

    timm's Eva argument                        TimmEvaConfig
    img_size, patch_size, embed_dim, depth,    image_size, patch_size, width, layers, heads,
    num_heads, mlp_ratio                       mlp_ratio (hidden width int(width * mlp_ratio))
    swiglu_mlp / scale_mlp                     mlp "swiglu" / mlp_norm (SwiGLU's sub-LN)
    attn_type "eva" / "rope", qkv_bias         qkv_bias "qv" (EVA: no key bias) / "qkv" / "none"
    qkv_fused                                  qkv_fused (a layout: one qkv Linear or q/k/v_proj)
    scale_attn_inner                           attention_norm (sub-LN before the attention's proj)
    use_post_norm, init_values                 post_norm, layer_scale (pre-norm blocks only)
    class_token, use_pre_transformer_norm      class_token, norm_pre (the patch embedding then
                                               has no bias)
    use_rot_pos_emb, rope_temperature,         rope, rope_temperature, rope_grid_offset,
    rope_grid_offset, rope_grid_indexing,      rope_grid_indexing, rope_reference_grid
    ref_feat_shape
    global_pool token / avg / map              pool (fc_norm when "avg", as timm decides it)
    attn_pool_num_heads, attn_pool_mlp_ratio   attention_pool_heads, attention_pool_mlp_ratio
    norm_layer (LayerNorm, its eps)            norm_eps
    open_clip timm_proj null / "none"          projection "linear_bias" (trunk.head) / "none"

Any other option (register tokens, qk norm, grouped key/value heads, other rotary variants, drop
rates, open_clip's own projection heads) is refused naming it.

    cliplab                                    open_clip (under visual.trunk.)
    vision_tower.patch_embedding               patch_embed.proj
    vision_tower.class_embedding [W]           cls_token [1, 1, W]
    vision_tower.position_embedding [N, W]     pos_embed [1, N, W]
    vision_tower.norm_pre / norm / fc_norm     norm_pre / norm / fc_norm
    ...blocks.N.norm_attn / norm_mlp           blocks.N.norm1 / norm2
    ...blocks.N.attn.qkv, q_bias, v_bias       blocks.N.attn.qkv, q_bias, v_bias (fused) or
                                               attn.q_proj / k_proj / v_proj (not fused)
    ...blocks.N.attn.norm / out                blocks.N.attn.norm / proj
    ...blocks.N.scale_attn / scale_mlp         blocks.N.gamma_1 / gamma_2
    ...blocks.N.mlp.fc / proj (gelu)           blocks.N.mlp.fc1 / fc2
    ...blocks.N.mlp.gate, fc, norm, proj       blocks.N.mlp.fc1_g, fc1_x, norm, fc2 (with mlp_norm)
                                               or fc1 = [gate; fc] packed, fc2 (without)
    vision_tower.pooler (probe, attn.query,    attn_pool (latent, q, kv, proj, norm, mlp.fc1/fc2)
    attn.key_value, attn.out, norm, mlp)
    image_projection                           head
"""

from __future__ import annotations

from dataclasses import dataclass

from cliplab.errors import UnsupportedArchitectureError
from cliplab.models.families.open_clip_sections import VISION_KEYS, check_known, image_size
from cliplab.models.families.position_rules import grid_positions
from cliplab.models.families.spec import TRANSFORMER_LORA_TARGETS, OpenClipContext, each_transformer_block
from cliplab.models.families.timm_trunk import (OUR_BLOCKS, TimmVitSizes, attention_pool_rules, check_exportable,
                                                check_timm_model_name, check_written, timm_family,
                                                trunk_embedding_rules)
from cliplab.models.key_rules import PARAMETER, KeyRule, renamed, rule
from cliplab.models.layers.eva_blocks import EVA_MLPS, QKV_BIASES
from cliplab.models.layers.rotary_2d import GRID_INDEXINGS
from cliplab.models.timm_models import timm_constructor_args
from cliplab.models.tower_configs import (PROJECTIONS, check_bool, check_choice, check_heads, check_norm_eps,
                                          check_positive_int)
from cliplab.models.towers.eva_transformer import EvaVisionTransformer

KIND = "timm_eva"
POOLS = ("token", "avg", "map")
TIMM_LAYER_NORM = "timm.layers.norm.LayerNorm"
TIMM_LAYER_NORM_EPS = 1e-6  # timm.layers.LayerNorm's default
# timm's Eva arguments this family builds only at these values.
BUILT_AT = {
    "in_chans": 3, "num_kv_heads": None, "qk_norm": False, "swiglu_align_to": 0, "drop_rate": 0.0,
    "pos_drop_rate": 0.0, "patch_drop_rate": 0.0, "proj_drop_rate": 0.0, "attn_drop_rate": 0.0,
    "drop_path_rate": 0.0, "attn_only_layer_scale": False, "num_reg_tokens": 0, "no_embed_class": False,
    "use_abs_pos_emb": True, "rope_type": "cat", "rope_rotate_half": False, "rope_shift_coords": None,
    "rope_jitter_coords": None, "rope_rescale_coords": None, "rope_mrope_section": None,
    "use_post_transformer_norm": None, "use_fc_norm": None, "dynamic_img_size": False, "dynamic_img_pad": False,
}
ATTENTION_TYPES = ("eva", "rope")
# open_clip's timm_proj: null (or "") keeps timm's classifier `head` as the projection.
OPEN_CLIP_PROJECTIONS = {None: "linear_bias", "": "linear_bias", "none": "none"}


@dataclass(kw_only=True)
class TimmEvaConfig(TimmVitSizes):
    """timm's Eva (see the module docstring for each field's timm argument); the sizes as
    `timm_trunk.TimmVitSizes`'.

    mlp: "gelu" or "swiglu"; mlp_norm (SwiGLU only): LayerNorm on its hidden
    vector. qkv_bias: "qv", "qkv" or "none"; qkv_fused: timm's tensor layout only. attention_norm:
    LayerNorm on the attention output before its projection. post_norm: EVA02-E's post-norm blocks
    (no layer scale). norm_pre: LayerNorm before the blocks, and no patch-embedding bias. rope: 2-D
    rotary positions (`layers.rotary_2d`) with rope_temperature, rope_grid_offset,
    rope_grid_indexing ("ij" or "xy") and rope_reference_grid ([H, W] or None). pool: "token" (class
    token), "avg" (mean of the patch tokens) or "map" (attention probe with attention_pool_heads and
    hidden width int(width * attention_pool_mlp_ratio); both unused by the other pools). fc_norm:
    the final LayerNorm after pooling instead of on every token. norm_eps: every LayerNorm's.
    projection: into the shared latent.
    """

    kind: str = KIND
    mlp: str = "gelu"
    mlp_norm: bool = False
    qkv_bias: str = "qv"
    qkv_fused: bool = True
    attention_norm: bool = False
    post_norm: bool = False
    layer_scale: float | None = None
    class_token: bool = True
    norm_pre: bool = False
    rope: bool = False
    rope_temperature: float = 10000.0
    rope_grid_offset: float = 0.0
    rope_grid_indexing: str = "ij"
    rope_reference_grid: list[int] | None = None
    pool: str = "token"
    attention_pool_heads: int = 8
    attention_pool_mlp_ratio: float = 4.0
    fc_norm: bool = False
    norm_eps: float = TIMM_LAYER_NORM_EPS
    projection: str = "linear_bias"

    def __post_init__(self) -> None:
        check_choice("vision.kind", self.kind, (KIND,))
        check_timm_model_name(self.timm_model_name)
        for name in ("image_size", "patch_size", "width", "layers", "attention_pool_heads"):
            check_positive_int(f"vision.{name}", getattr(self, name))
        check_heads("vision", self.width, self.heads)
        if self.image_size % self.patch_size:
            raise ValueError(f"vision.image_size ({self.image_size}) must be divisible by "
                             f"vision.patch_size ({self.patch_size})")
        for name in ("mlp_ratio", "attention_pool_mlp_ratio", "rope_temperature"):
            if not _is_number(getattr(self, name)) or getattr(self, name) <= 0:
                raise ValueError(f"vision.{name} must be a positive number, got {getattr(self, name)!r}")
        for name in ("mlp_norm", "qkv_fused", "attention_norm", "post_norm", "class_token", "norm_pre", "rope",
                     "fc_norm"):
            check_bool(f"vision.{name}", getattr(self, name))
        check_choice("vision.mlp", self.mlp, EVA_MLPS)
        check_choice("vision.qkv_bias", self.qkv_bias, QKV_BIASES)
        check_choice("vision.rope_grid_indexing", self.rope_grid_indexing, GRID_INDEXINGS)
        check_choice("vision.pool", self.pool, POOLS)
        check_choice("vision.projection", self.projection, PROJECTIONS)
        if self.mlp_norm and self.mlp != "swiglu":
            raise ValueError("vision.mlp_norm needs vision.mlp='swiglu'")
        if self.layer_scale is not None and (not _is_number(self.layer_scale) or self.post_norm):
            raise ValueError(f"vision.layer_scale must be a number or None, and None with vision.post_norm, got "
                             f"{self.layer_scale!r}")
        if not _is_number(self.rope_grid_offset):
            raise ValueError(f"vision.rope_grid_offset must be a number, got {self.rope_grid_offset!r}")
        if isinstance(self.rope_reference_grid, tuple):
            self.rope_reference_grid = list(self.rope_reference_grid)
        if self.rope_reference_grid is not None and not (
                isinstance(self.rope_reference_grid, list) and len(self.rope_reference_grid) == 2
                and all(isinstance(side, int) and not isinstance(side, bool) and side > 0
                        for side in self.rope_reference_grid)):
            raise ValueError(f"vision.rope_reference_grid must be [H, W] (positive ints) or None, "
                             f"got {self.rope_reference_grid!r}")
        if self.rope and (self.width // self.heads) % 4:
            raise ValueError(f"vision.rope needs a head dimension divisible by 4, got width/heads = "
                             f"{self.width}/{self.heads}")
        if self.pool == "token" and not self.class_token:
            raise ValueError("vision.pool='token' needs vision.class_token=True")
        if self.pool == "map":
            check_heads("vision.attention_pool", self.width, self.attention_pool_heads)
        check_norm_eps("vision.norm_eps", self.norm_eps)  # a bool is outside (0, 1) too

    @property
    def output_width(self) -> int:
        return self.width

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    @property
    def mlp_width(self) -> int:
        """The MLP's hidden width, timm's int(width * mlp_ratio)."""
        return int(self.width * self.mlp_ratio)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _refuse_option(name: str, option: str, value) -> None:
    raise UnsupportedArchitectureError(
        f"vision_cfg.timm_model_name={name!r} (timm's Eva) needs {option}={value!r}, which the timm tower family "
        f"'{KIND}' does not build yet")


def _norm_eps(name: str, norm_layer) -> float:
    """The eps of timm's `norm_layer` argument: timm's LayerNorm, or a partial of it setting eps."""
    if norm_layer == TIMM_LAYER_NORM:
        return TIMM_LAYER_NORM_EPS
    if (isinstance(norm_layer, dict) and norm_layer.get("partial") == TIMM_LAYER_NORM and not norm_layer.get("args")
            and set(norm_layer.get("keywords", {})) <= {"eps"}):
        return float(norm_layer["keywords"].get("eps", TIMM_LAYER_NORM_EPS))
    _refuse_option(name, "norm_layer", norm_layer)


def _reference_grid(reference) -> list[int] | None:
    if reference is None:
        return None
    return [int(reference)] * 2 if isinstance(reference, int) else [int(side) for side in reference]


def read(vision: dict, context: OpenClipContext) -> TimmEvaConfig:
    """As open_clip's TimmModel builds the tower with `timm_proj` null or "none": timm's arguments
    for the model, with open_clip's `timm_pool` as timm's global_pool and a classifier of width
    embed_dim (null) or none ("none")."""
    check_known(vision, VISION_KEYS, "vision_cfg")
    name = vision["timm_model_name"]
    arguments = timm_constructor_args(name)
    for option, value in BUILT_AT.items():
        if arguments[option] != value:
            _refuse_option(name, option, arguments[option])
    if arguments["attn_type"] not in ATTENTION_TYPES:
        _refuse_option(name, "attn_type", arguments["attn_type"])
    if arguments["scale_mlp"] and not arguments["swiglu_mlp"]:
        _refuse_option(name, "scale_mlp", True)  # a GELU MLP with a norm inside
    for option in ("timm_drop_path", "patch_dropout"):
        if vision.get(option):
            _refuse_option(name, option, vision[option])
    proj = vision.get("timm_proj", "linear")
    if proj not in OPEN_CLIP_PROJECTIONS:
        _refuse_option(name, "timm_proj", proj)
    pool = vision.get("timm_pool", "avg")
    if pool not in POOLS:
        _refuse_option(name, "global_pool", pool)
    side = image_size(vision.get("image_size", 224))
    timm_side = image_size(arguments["img_size"])
    if side != timm_side:
        raise UnsupportedArchitectureError(f"vision_cfg.image_size={side} differs from timm's img_size {timm_side} "
                                           f"for {name!r} (open_clip builds the timm model at its own size)")
    qkv_bias = "none" if not arguments["qkv_bias"] else ("qv" if arguments["attn_type"] == "eva" else "qkv")
    post_norm = arguments["use_post_norm"]
    pooler = ({"attention_pool_heads": arguments["attn_pool_num_heads"] or arguments["num_heads"],
               "attention_pool_mlp_ratio": arguments["attn_pool_mlp_ratio"] or arguments["mlp_ratio"]}
              if pool == "map" else {})
    return TimmEvaConfig(
        timm_model_name=name, image_size=side, patch_size=arguments["patch_size"], width=arguments["embed_dim"],
        layers=arguments["depth"], heads=arguments["num_heads"], mlp_ratio=arguments["mlp_ratio"],
        mlp="swiglu" if arguments["swiglu_mlp"] else "gelu", mlp_norm=arguments["scale_mlp"], qkv_bias=qkv_bias,
        qkv_fused=arguments["qkv_fused"], attention_norm=arguments["scale_attn_inner"], post_norm=post_norm,
        layer_scale=None if post_norm else arguments["init_values"], class_token=arguments["class_token"],
        norm_pre=arguments["use_pre_transformer_norm"], rope=arguments["use_rot_pos_emb"],
        rope_temperature=float(arguments["rope_temperature"]), rope_grid_offset=float(arguments["rope_grid_offset"]),
        rope_grid_indexing=arguments["rope_grid_indexing"],
        rope_reference_grid=_reference_grid(arguments["ref_feat_shape"]), pool=pool, **pooler,
        fc_norm=pool == "avg", norm_eps=_norm_eps(name, arguments["norm_layer"]),
        projection=OPEN_CLIP_PROJECTIONS[proj])


def write(vision: TimmEvaConfig, context: OpenClipContext) -> dict:
    """The section naming `vision.timm_model_name`; refused when timm's model is not this config
    (open_clip builds timm towers by name only)."""
    name = vision.timm_model_name
    check_exportable(name, KIND)
    values = {"timm_model_name": name, "timm_model_pretrained": False, "timm_pool": vision.pool,
              "timm_proj": None if vision.projection == "linear_bias" else "none",
              "image_size": image_size(timm_constructor_args(name)["img_size"])}
    return check_written(vision, values, lambda section: read(section, context))


def _attention_rules(vision: TimmEvaConfig, ours: str, theirs: str) -> list[KeyRule]:
    """EvaAttention's qkv and biases in timm's fused (qkv, q_bias, v_bias) or separate
    (q_proj, k_proj, v_proj) layout."""
    if vision.qkv_fused:
        return [rule(ours + r"qkv\." + PARAMETER, theirs + "qkv.{param}"),
                rule(ours + r"q_bias", theirs + "q_bias"), rule(ours + r"v_bias", theirs + "v_bias")]
    return [rule(ours + r"qkv\." + PARAMETER, *(theirs + f"{part}_proj.{{param}}" for part in "qkv")),
            rule(ours + r"q_bias", theirs + "q_proj.bias"), rule(ours + r"v_bias", theirs + "v_proj.bias")]


def _mlp_rules(vision: TimmEvaConfig, ours: str, theirs: str) -> list[KeyRule]:
    """The MLP as timm lays it out: Mlp (fc1, fc2), SwiGLU (fc1_g, fc1_x, norm, fc2), or GluMlp's
    packed fc1 (gate rows first) when SwiGLU has no norm."""
    if vision.mlp == "gelu":
        inputs = [rule(ours + r"fc\." + PARAMETER, theirs + "fc1.{param}")]
    elif vision.mlp_norm:
        inputs = [rule(ours + r"gate\." + PARAMETER, theirs + "fc1_g.{param}"),
                  rule(ours + r"fc\." + PARAMETER, theirs + "fc1_x.{param}"),
                  rule(ours + r"norm\." + PARAMETER, theirs + "norm.{param}")]
    else:
        inputs = [rule(ours + r"(?:gate|fc)\." + PARAMETER, theirs + "fc1.{param}")]
    return inputs + [rule(ours + r"proj\." + PARAMETER, theirs + "fc2.{param}")]


def open_clip_rules(vision: TimmEvaConfig, prefix: str) -> list[KeyRule]:
    trunk = prefix + "trunk."
    theirs = trunk + "blocks.{0}."
    return [
        *trunk_embedding_rules(trunk),
        *renamed(OUR_BLOCKS, theirs, {"norm_attn.": "norm1", "attn.norm.": "attn.norm", "attn.out.": "attn.proj",
                                      "scale_attn.gamma": "gamma_1", "norm_mlp.": "norm2",
                                      "scale_mlp.gamma": "gamma_2"}),
        *_attention_rules(vision, OUR_BLOCKS + r"attn\.", theirs + "attn."),
        *_mlp_rules(vision, OUR_BLOCKS + r"mlp\.", theirs + "mlp."),
        *renamed(r"vision_tower\.", trunk, {"norm.": "norm", "fc_norm.": "fc_norm"}),
        *attention_pool_rules(trunk),
        rule(r"image_projection\." + PARAMETER, trunk + "head.{param}"),
    ]


FAMILY = timm_family(
    kind=KIND, config=TimmEvaConfig, build=EvaVisionTransformer, fsdp_units=each_transformer_block,
    summary="timm's Eva as open_clip wraps it (visual.trunk): EVA01, EVA02 (rotary, SwiGLU, sub-LN), PE-Core "
            "(rotary, attention pooling)",
    read=read, write=write, rules=open_clip_rules,
    projection_locked=lambda vision: True,  # the projection is timm's classifier `head`, in the trunk
    lora_targets=lambda vision: (*TRANSFORMER_LORA_TARGETS, "mlp.gate"),  # SwiGLU's second input
    resize_positions=grid_positions(
        "position_embedding", lambda vision: int(vision.class_token),
        "the class token's row kept (timm's Eva.set_input_size); rotary positions on the new grid, rescaled to "
        "rope_reference_grid where the config has one, as timm's rope.update_feat_shape"))
