"""Tower family "resnet": OpenAI's ModifiedResNet (`towers.resnet_tower`, `VisionConfig` with 4
stage depths), as open_clip builds it for `vision_cfg.layers` given as a list.

    open_clip vision_cfg                       VisionConfig
    layers [4 ints], width, head_width         layers, width, heads = 32 width / head_width,
                                               projection "linear_bias" (attnpool.c_proj)

    cliplab                                    open_clip
    vision_tower.stem (3 conv + bn)            visual.conv1..3 / bn1..3
    vision_tower.stages.I.J                    visual.layerI+1.J (shortcut: downsample)
    vision_tower.attention_pool.qkv            visual.attnpool.{q,k,v}_proj (concatenated)
    vision_tower.attention_pool.position_emb.  visual.attnpool.positional_embedding
    image_projection (with bias)               visual.attnpool.c_proj
"""

from __future__ import annotations

from cliplab.models.families.open_clip_sections import (VISION_KEYS, check_known, check_supported, image_size,
                                                         norm_eps, refuse)
from cliplab.models.families.position_rules import grid_positions
from cliplab.models.families.spec import OpenClipContext, OpenClipForm, TowerFamily, each_stage
from cliplab.models.key_rules import NORM, PARAMETER, KeyRule, rule
from cliplab.models.tower_configs import RESNET_STAGES, RESNET_STRIDE, VisionConfig
from cliplab.models.towers.locking import open_clip_layout
from cliplab.models.towers.resnet_tower import ModifiedResNet

_STEM = {"0": "conv1", "1": "bn1", "3": "conv2", "4": "bn2", "6": "conv3", "7": "bn3"}


def recognises(vision: dict) -> bool:
    return not vision.get("timm_model_name") and isinstance(vision.get("layers"), (list, tuple))


def read(vision: dict, context: OpenClipContext) -> VisionConfig:
    check_known(vision, VISION_KEYS, "vision_cfg")
    check_supported(vision, "vision_cfg")
    width = vision.get("width", 768)
    return VisionConfig(kind="resnet", layers=list(vision["layers"]), width=width,
                        heads=width * RESNET_STRIDE // vision.get("head_width", 64), projection="linear_bias",
                        image_size=image_size(vision.get("image_size", 224)), activation=context.activation,
                        norm_eps=norm_eps(vision, "vision_cfg"))


def write(vision: VisionConfig, context: OpenClipContext) -> dict:
    if vision.projection != "linear_bias":
        refuse("a ResNet image tower projects with a biased linear layer (vision.projection='linear_bias')")
    return {"layers": list(vision.layers), "width": vision.width, "image_size": vision.image_size,
            "head_width": vision.output_width // vision.heads, "patch_size": None}


def open_clip_rules(vision: VisionConfig, prefix: str) -> list[KeyRule]:
    stem = [rule(rf"vision_tower\.stem\.{index}\." + NORM, f"{prefix}{name}.{{param}}")
            for index, name in _STEM.items()]
    stages = []
    for index in range(RESNET_STAGES):  # open_clip counts its stages layer1..layer4
        ours, theirs = rf"vision_tower\.stages\.{index}\.(\d+)", f"{prefix}layer{index + 1}.{{0}}"
        stages += [rule(ours + r"\.(conv\d|bn\d)\." + NORM, theirs + ".{1}.{param}"),
                   rule(ours + r"\.shortcut\.1\.weight", theirs + ".downsample.0.weight"),
                   rule(ours + r"\.shortcut\.2\." + NORM, theirs + ".downsample.1.{param}")]
    return stem + stages + [
        rule(r"vision_tower\.attention_pool\.position_embedding", prefix + "attnpool.positional_embedding"),
        rule(r"vision_tower\.attention_pool\.qkv\." + PARAMETER, prefix + "attnpool.q_proj.{param}",
             prefix + "attnpool.k_proj.{param}", prefix + "attnpool.v_proj.{param}"),
        rule(r"image_projection\." + PARAMETER, prefix + "attnpool.c_proj.{param}"),
    ]


FAMILY = TowerFamily(
    kind="resnet", side="vision", config=VisionConfig, build=ModifiedResNet,
    summary="OpenAI's ModifiedResNet (open_clip's RN50, RN101, RN50x4 ...)",
    lock_groups=open_clip_layout(ModifiedResNet.parameter_groups), fsdp_units=each_stage,
    lora_targets=lambda vision: ("conv1", "conv2", "conv3", "attention_pool.qkv"),  # the bottlenecks, the pool
    # open_clip's ModifiedResNet has no activation option: the quick_gelu flag passes it by.
    open_clip=OpenClipForm(recognises=recognises, read=read, write=write, activation=lambda vision: None,
                           rules=open_clip_rules),
    resize_positions=grid_positions("attention_pool.position_embedding", lambda vision: 1,
                                    "the mean token's row kept (the ViT's rule)"),
)
