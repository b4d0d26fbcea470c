"""Tower family "timm_fastvit": timm's FastVit as open_clip wraps it (`TimmModel`: the timm model as
`visual.trunk`), the image encoders of MobileCLIP-S1/S2 and MobileCLIP2-S0/S2/S3/S4 (`fastvit_mci0`
to `fastvit_mci4`). The tower is `towers.fastvit_tower.FastVitTower` (MobileOne blocks with their
train-time branches, RepMixer stages, attention stages with conditional positional encodings,
BatchNorm throughout); `reparameterize()` on the tower, or `CLIP.reparameterize()`, folds the
branches for inference (the config then says `reparameterized=True`; open_clip cannot load that
layout, so it is not exported).

    open_clip vision_cfg                       TimmFastVitConfig
    timm_model_name                            timm_model_name, and from timm's arguments: layers,
                                               embed_dims (widths), mlp_ratios, token_mixers,
                                               downsamples, se_downsamples, pos_embs
                                               (position_encodings), repmixer_kernel_size
                                               (mixer_kernel_size), down_patch_size
                                               (downsample_kernel_size), layer_scale_init_value
                                               (layer_scale), lkc_use_act (downsample_activation),
                                               stem_use_scale_branch (stem_scale_branch), cls_ratio
                                               (head_ratio), norm_layer (attention_norm)
    image_size                                 image_size (FastViT has no fixed size)
    timm_pool ("" keeps timm's "avg")          pool "avg"
    timm_drop_path                             drop_path (None: timm's 0)
    timm_proj null / "linear" / "none"         projection "linear_bias" with timm_classifier (timm's
    (+ timm_proj_bias)                         head.fc, what MobileCLIP uses) / "linear" or
                                               "linear_bias" / "none"

    cliplab                                    open_clip
    vision_tower.X                             visual.trunk.X (timm's names), except:
    vision_tower.stages.I.downsample.N         visual.trunk.stages.I.downsample.proj.N
    vision_tower.stages.I.blocks.J.token_      visual.trunk.stages.I.blocks.J.token_mixer.proj
      mixer.out                                  (attention blocks)
    image_projection                           visual.trunk.head.fc (timm_classifier) or
                                               visual.head.proj

What open_clip's TimmModel decides around the trunk (refusals, the written section, locking) is
`families.timm_trunk`'s. Locking follows open_clip's `TimmModel.lock` (timm's FastVit group matcher,
see `FastVitTower.parameter_groups`): timm's classifier is in the trunk and locks with the final
conv; open_clip's own `visual.head` stays trainable (`timm_trunk.projection_locked`). BatchNorm
statistics under DDP, FSDP2 and a locked tower: docs/training.md.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from cliplab.models.families.open_clip_sections import image_size, refuse
from cliplab.models.families.spec import OpenClipContext, each_stage
from cliplab.models.families.timm_staged import timm_arguments
from cliplab.models.families.timm_trunk import (check_exportable, check_timm_model_name, check_written, refuse_option,
                                                timm_family)
from cliplab.models.key_rules import PARAMETER, KeyRule, rule
from cliplab.models.layers.fastvit_blocks import ATTENTION_HEAD_WIDTH, POSITION_KERNEL
from cliplab.models.tower_configs import PROJECTIONS, check_bool, check_choice, check_positive_int, check_probability
from cliplab.models.towers.fastvit_tower import FastVitTower

KIND = "timm_fastvit"
TOKEN_MIXERS = ("repmixer", "attention")
ATTENTION_NORMS = ("batch", "layer")
POOLS = ("avg",)
# timm's FastVit arguments this family builds only at these values.
BUILT_AT = {"in_chans": 3, "down_stride": 2, "fork_feat": False, "drop_rate": 0.0, "proj_drop_rate": 0.0,
            "drop_path_rate": 0.0, "global_pool": "avg", "act_layer": "torch.nn.modules.activation.GELU",
            "inference_mode": False}
BATCH_NORM = "torch.nn.modules.batchnorm.BatchNorm2d"
LAYER_NORM_2D = {"partial": "timm.layers.norm.LayerNorm2d", "args": [], "keywords": {"eps": 1e-5}}
POSITION_ENCODING = {"partial": "timm.models.fastvit.RepConditionalPosEnc", "args": [],
                     "keywords": {"spatial_shape": [POSITION_KERNEL, POSITION_KERNEL]}}
STAGE_FIELDS = ("layers", "widths", "mlp_ratios", "token_mixers", "downsamples", "se_downsamples",
                "position_encodings")


@dataclass(kw_only=True)
class TimmFastVitConfig:
    """timm's FastVit (see the module docstring and `towers.fastvit_tower`).

    timm_model_name: the timm model described (None for cliplab's own sizes, which open_clip
    cannot load). image_size: the square input side. Per stage (lists of one length): layers
    (blocks), widths (channels), mlp_ratios, token_mixers ("repmixer" or "attention"; attention
    widths multiples of 32), downsamples (a downsampling layer even at an unchanged width; a new
    width always downsamples), se_downsamples (squeeze-excite in it), position_encodings (a 7x7
    RepCPE before the blocks). mixer_kernel_size: RepMixer's depthwise kernel.
    downsample_kernel_size: the large-kernel conv's. layer_scale: every layer scale's initial value
    (None: no layer scale). downsample_activation: GELU after the large-kernel conv.
    stem_scale_branch: the stem's 1x1 branches. head_ratio: the final conv's width over the last
    stage's. attention_norm: "batch" (BatchNorm2d) or "layer" (LayerNorm2d, eps 1e-5) before
    attention. pool: "avg". drop_path: stochastic depth of the last block (0 at the first, linear
    over all blocks between, as timm's stage-wise rates). reparameterized: the train-time branches folded (see
    `FastVitTower.reparameterize`). projection: into the shared latent ("linear", "linear_bias"
    or "none"). timm_classifier: the projection is timm's classifier `head.fc` in the trunk
    (open_clip's `timm_proj: null`; needs "linear_bias").
    """

    kind: str = KIND
    timm_model_name: str | None = None
    image_size: int = 256
    layers: list[int]
    widths: list[int]
    mlp_ratios: list[float]
    token_mixers: list[str]
    downsamples: list[bool]
    se_downsamples: list[bool]
    position_encodings: list[bool]
    mixer_kernel_size: int = 3
    downsample_kernel_size: int = 7
    layer_scale: float | None = 1e-5
    downsample_activation: bool = False
    stem_scale_branch: bool = True
    head_ratio: float = 2.0
    attention_norm: str = "batch"
    pool: str = "avg"
    drop_path: float = 0.0
    reparameterized: bool = False
    projection: str = "linear"
    timm_classifier: bool = False

    def __post_init__(self) -> None:
        check_choice("vision.kind", self.kind, (KIND,))
        check_timm_model_name(self.timm_model_name)
        check_positive_int("vision.image_size", self.image_size)
        self._check_stages()
        for name in ("mixer_kernel_size", "downsample_kernel_size"):
            check_positive_int(f"vision.{name}", getattr(self, name))
            if getattr(self, name) % 2 == 0:
                raise ValueError(f"vision.{name} must be odd, got {getattr(self, name)}")
        if self.layer_scale is not None and (not isinstance(self.layer_scale, (int, float))
                                             or isinstance(self.layer_scale, bool)):
            raise ValueError(f"vision.layer_scale must be a number or None, got {self.layer_scale!r}")
        for name in ("downsample_activation", "stem_scale_branch", "reparameterized", "timm_classifier"):
            check_bool(f"vision.{name}", getattr(self, name))
        if not isinstance(self.head_ratio, (int, float)) or self.output_width <= 0:
            raise ValueError(f"vision.head_ratio must be a number giving a positive width, got {self.head_ratio!r}")
        check_choice("vision.attention_norm", self.attention_norm, ATTENTION_NORMS)
        check_choice("vision.pool", self.pool, POOLS)
        check_probability("vision.drop_path", self.drop_path)
        check_choice("vision.projection", self.projection, PROJECTIONS)
        if self.timm_classifier and self.projection != "linear_bias":
            raise ValueError(f"vision.timm_classifier=True needs vision.projection='linear_bias' (timm's classifier "
                             f"has a bias), got {self.projection!r}")

    def _check_stages(self) -> None:
        for name in STAGE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, tuple):
                setattr(self, name, list(value))
            if not isinstance(getattr(self, name), list) or not value:
                raise ValueError(f"vision.{name} must be a non-empty list (one entry per stage), got {value!r}")
            if len(value) != len(self.layers):
                raise ValueError(f"vision.{name} must have one entry per stage ({len(self.layers)}, as "
                                 f"vision.layers), got {value!r}")
        for stage, (depth, width, ratio, mixer) in enumerate(zip(self.layers, self.widths, self.mlp_ratios,
                                                                 self.token_mixers)):
            check_positive_int(f"vision.layers[{stage}]", depth)
            check_positive_int(f"vision.widths[{stage}]", width)
            if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or ratio <= 0:
                raise ValueError(f"vision.mlp_ratios[{stage}] must be a positive number, got {ratio!r}")
            check_choice(f"vision.token_mixers[{stage}]", mixer, TOKEN_MIXERS)
            if mixer == "attention" and width % ATTENTION_HEAD_WIDTH:
                raise ValueError(f"vision.widths[{stage}] must be a multiple of {ATTENTION_HEAD_WIDTH} in an "
                                 f"attention stage (heads of width {ATTENTION_HEAD_WIDTH}), got {width}")
        for name in ("downsamples", "se_downsamples", "position_encodings"):
            for stage, value in enumerate(getattr(self, name)):
                check_bool(f"vision.{name}[{stage}]", value)

    @property
    def output_width(self) -> int:
        return int(self.widths[-1] * self.head_ratio)

    def folded(self) -> "TimmFastVitConfig":
        """This config with the train-time branches folded (`reparameterized=True`)."""
        return dataclasses.replace(self, reparameterized=True)


def _attention_norm(name: str, norm_layer) -> str:
    if norm_layer == BATCH_NORM:
        return "batch"
    if norm_layer == LAYER_NORM_2D:
        return "layer"
    refuse_option(name, KIND, "norm_layer", norm_layer)


def _position_encodings(name: str, pos_embs: list) -> list[bool]:
    for value in pos_embs:
        if value not in (None, POSITION_ENCODING):
            refuse_option(name, KIND, "pos_embs", value)
    return [value is not None for value in pos_embs]


def _projection(name: str, vision: dict) -> tuple[str, bool]:
    """(projection, timm_classifier) of open_clip's timm_proj: null is timm's classifier (with bias)."""
    proj = vision.get("timm_proj", "linear")
    if proj is None:
        return "linear_bias", True
    if proj not in ("linear", "none"):
        refuse_option(name, KIND, "timm_proj", proj)
    if proj == "linear" and vision.get("timm_drop"):  # open_clip's head dropout; ignored by timm's classifier
        refuse_option(name, KIND, "timm_drop", vision["timm_drop"])
    if proj == "none":
        return "none", False
    return ("linear_bias" if vision.get("timm_proj_bias", False) else "linear"), False


def read(vision: dict, context: OpenClipContext) -> TimmFastVitConfig:
    """As open_clip's TimmModel builds the tower from timm's arguments for the model."""
    name, arguments = timm_arguments(vision, KIND, BUILT_AT)
    if vision.get("patch_dropout"):
        refuse_option(name, KIND, "patch_dropout", vision["patch_dropout"])
    drop_path = vision.get("timm_drop_path")
    pool = vision.get("timm_pool", "avg") or arguments["global_pool"]
    if pool not in POOLS:
        refuse_option(name, KIND, "global_pool", pool)
    projection, timm_classifier = _projection(name, vision)
    return TimmFastVitConfig(
        timm_model_name=name, image_size=image_size(vision.get("image_size", 224)), layers=list(arguments["layers"]),
        widths=list(arguments["embed_dims"]), mlp_ratios=list(arguments["mlp_ratios"]),
        token_mixers=list(arguments["token_mixers"]), downsamples=list(arguments["downsamples"]),
        se_downsamples=list(arguments["se_downsamples"]),
        position_encodings=_position_encodings(name, arguments["pos_embs"]),
        mixer_kernel_size=arguments["repmixer_kernel_size"], downsample_kernel_size=arguments["down_patch_size"],
        layer_scale=arguments["layer_scale_init_value"], downsample_activation=arguments["lkc_use_act"],
        stem_scale_branch=arguments["stem_use_scale_branch"], head_ratio=arguments["cls_ratio"],
        attention_norm=_attention_norm(name, arguments["norm_layer"]), pool=pool,
        drop_path=arguments["drop_path_rate"] if drop_path is None else drop_path, projection=projection,
        timm_classifier=timm_classifier)


def write(vision: TimmFastVitConfig, context: OpenClipContext) -> dict:
    """The section naming `vision.timm_model_name`; refused when timm's model is not this config
    or its branches are folded."""
    name = vision.timm_model_name
    check_exportable(name, KIND)
    if vision.reparameterized:
        refuse("vision.reparameterized=True: open_clip builds FastViT with its train-time branches (export the "
               "model before reparameterize())")
    values = {"timm_model_name": name, "timm_model_pretrained": False, "timm_pool": vision.pool,
              "timm_proj": None if vision.timm_classifier else ("none" if vision.projection == "none" else "linear"),
              "timm_proj_bias": vision.projection == "linear_bias" and not vision.timm_classifier,
              "image_size": vision.image_size}
    if vision.drop_path:
        values["timm_drop_path"] = vision.drop_path
    return check_written(vision, values, lambda section: read(section, context))


def open_clip_rules(vision: TimmFastVitConfig, prefix: str) -> list[KeyRule]:
    trunk = prefix + "trunk."
    return [
        rule(r"vision_tower\.stages\.(\d+)\.downsample\.(.+)", trunk + "stages.{0}.downsample.proj.{1}"),
        rule(r"vision_tower\.stages\.(\d+)\.blocks\.(\d+)\.token_mixer\.out\." + PARAMETER,
             trunk + "stages.{0}.blocks.{1}.token_mixer.proj.{param}"),
        rule(r"vision_tower\.(.+)", trunk + "{0}"),
        rule(r"image_projection\." + PARAMETER,
             trunk + "head.fc.{param}" if vision.timm_classifier else prefix + "head.proj.{param}"),
    ]


FAMILY = timm_family(
    kind=KIND, config=TimmFastVitConfig, build=FastVitTower, fsdp_units=each_stage,
    summary="timm's FastVit as open_clip wraps it (MobileCLIP-S1/S2, MobileCLIP2-S0..S4): MobileOne, RepMixer and "
            "attention stages, BatchNorm; reparameterize() folds the train-time branches",
    read=read, write=write, rules=open_clip_rules)
