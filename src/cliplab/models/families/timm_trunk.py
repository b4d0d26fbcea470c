"""What open_clip's `TimmModel` does around a timm model, for every timm tower family: the options
it decides (pooling, projection, stochastic depth, image size; `read_trunk_options` /
`write_trunk_options`), the names it gives (`visual.trunk.` for timm's model, `visual.head.proj` or
timm's classifier `visual.trunk.head` for the projection; `trunk_head_rules`), its lock
(`TimmModel.lock`: timm's `group_matcher` groups of the trunk, `timm_groups`; open_clip's head
outside them stays trainable, `projection_locked`), and the refusal of a timm option a family does
not build (`refuse_option`). timm's own facts come from `cliplab.models.timm_models`. Every timm
family's `FAMILY` is `timm_family(...)`: recognised by its timm model names, timm's lock groups,
exact GELU whatever open_clip's quick_gelu flag says.

A family's config holds `pool`, `fc_norm`, `projection`, `timm_classifier`, `drop_path`,
`image_size` and `timm_model_name` (e.g. `timm_vit.TimmTowerConfig`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

from torch import nn

from cliplab.errors import UnsupportedArchitectureError
from cliplab.models.families.open_clip_sections import VISION_KEYS, check_known, image_size, refuse
from cliplab.models.families.spec import OpenClipForm, PositionsResize, TowerFamily, transformer_lora_targets
from cliplab.models.key_rules import PARAMETER, KeyRule, renamed, rule
from cliplab.models.timm_models import timm_constructor_args, timm_family_kind
from cliplab.models.towers.locking import GroupItem

OUR_BLOCKS = r"vision_tower\.transformer\.blocks\.(\d+)\."  # a ViT trunk's blocks, the index as group 0
TIMM_LAYER_NORM_EPS = 1e-6  # timm.layers.LayerNorm's default, VisionTransformer's norm
ACTIVATIONS = {None: "gelu", "gelu_tanh": "gelu_tanh"}  # timm's act_layer -> cliplab's activation


@dataclass(kw_only=True)
class TimmVitSizes:
    """The sizes of a timm ViT trunk, the first fields of the "timm_vit"-like families' configs and
    of "timm_eva"'s (each checks them): timm_model_name, the timm model the config describes (what
    an open_clip export names; None for a config of cliplab's own, which open_clip cannot load);
    image_size, patch_size, width, layers, heads, mlp_ratio as timm's img_size, patch_size,
    embed_dim, depth, num_heads, mlp_ratio, ViT-B/16's by default. A family's config sets the
    `kind` default."""

    kind: str
    timm_model_name: str | None = None
    image_size: int
    patch_size: int = 16
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0


def check_timm_model_name(name) -> None:
    """A config's `timm_model_name`: the timm model it describes, or None (cliplab's own sizes)."""
    if name is not None and not isinstance(name, str):
        raise ValueError(f"vision.timm_model_name must be a str or None, got {name!r}")


def refuse_option(name: str, kind: str, option: str, value) -> None:
    """UnsupportedArchitectureError: timm model `name` needs `option`=`value`, which family `kind`
    does not build."""
    raise UnsupportedArchitectureError(
        f"vision_cfg.timm_model_name={name!r} needs {option}={value!r}, which the timm tower family '{kind}' "
        f"does not build yet")


def recognising(kind: str) -> Callable[[dict], bool]:
    """The `OpenClipForm.recognises` of family `kind`: a vision_cfg naming one of its timm models."""
    def recognises(vision: dict) -> bool:
        return timm_family_kind(vision.get("timm_model_name")) == kind
    return recognises


def check_exportable(name: str | None, kind: str) -> None:
    """Refuse an export whose config names no timm model of family `kind`."""
    if timm_family_kind(name) != kind:
        refuse(f"vision.timm_model_name={name!r} is not a timm model of the family '{kind}' (open_clip builds a "
               "timm tower by its timm model name)")


def read_trunk_options(vision: dict, kind: str, arguments: dict) -> dict:
    """What open_clip's TimmModel decides around timm's model, as config fields: pool, fc_norm,
    projection, timm_classifier, drop_path and image_size. open_clip passes its pool (and 0 or
    embed_dim classes) to timm's constructor when no projection of its own follows ("none" or
    null), whose `global_pool` then decides fc_norm; with "linear" it resets only the pooling after
    construction (an empty pool keeps timm's)."""
    check_known(vision, VISION_KEYS, "vision_cfg")
    name = vision["timm_model_name"]
    for option in ("timm_drop", "patch_dropout"):
        if vision.get(option):
            refuse_option(name, kind, option, vision[option])
    proj = vision.get("timm_proj", "linear")
    if proj not in ("linear", "none", None):
        refuse_option(name, kind, "timm_proj", proj)
    pool = vision.get("timm_pool", "avg")
    constructor_pool = arguments["global_pool"] if proj == "linear" else pool
    pool = pool or constructor_pool
    fc_norm = constructor_pool in ("avg", "avgmax", "max") if arguments["fc_norm"] is None else arguments["fc_norm"]
    side, timm_side = image_size(vision.get("image_size", 224)), image_size(arguments["img_size"])
    if side != timm_side:
        raise UnsupportedArchitectureError(f"vision_cfg.image_size={side} differs from timm's img_size {timm_side} "
                                           f"for {name!r} (open_clip builds the timm model at its own size)")
    projection = {"linear": "linear_bias" if vision.get("timm_proj_bias", False) else "linear", "none": "none",
                  None: "linear_bias"}[proj]
    drop_path = vision.get("timm_drop_path")
    return {"pool": pool, "fc_norm": bool(fc_norm), "projection": projection, "timm_classifier": proj is None,
            "drop_path": arguments["drop_path_rate"] if drop_path is None else drop_path, "image_size": side}


def write_trunk_options(config) -> dict:
    """The open_clip section naming `config.timm_model_name` with the options `read_trunk_options`
    reads back."""
    values = {"timm_model_name": config.timm_model_name, "timm_model_pretrained": False, "timm_pool": config.pool,
              "timm_proj": None if config.timm_classifier else ("none" if config.projection == "none" else "linear"),
              "timm_proj_bias": config.projection == "linear_bias" and not config.timm_classifier,
              "image_size": image_size(timm_constructor_args(config.timm_model_name)["img_size"])}
    if config.drop_path:
        values["timm_drop_path"] = config.drop_path
    return values


def check_written(config, values: dict, read_back) -> dict:
    """`values` when reading them back gives `config`; otherwise refused naming the differences
    (a config of cliplab's own sizes: open_clip builds timm towers by name only)."""
    timm_built = read_back(values)
    differences = [f"vision.{field.name}={getattr(config, field.name)!r} (timm: {getattr(timm_built, field.name)!r})"
                   for field in fields(config) if getattr(config, field.name) != getattr(timm_built, field.name)]
    if differences:
        refuse(f"timm's {config.timm_model_name} is not this tower: {', '.join(differences)}")
    return values


def timm_norm_eps(name: str, kind: str, norm_layer) -> float:
    """The eps of timm's `norm_layer` argument: None (timm's LayerNorm, 1e-6) or a partial of it."""
    if norm_layer is None:
        return TIMM_LAYER_NORM_EPS
    if (isinstance(norm_layer, dict) and norm_layer.get("partial") == "timm.layers.norm.LayerNorm"
            and not norm_layer.get("args") and set(norm_layer.get("keywords", {})) == {"eps"}):
        return float(norm_layer["keywords"]["eps"])
    refuse_option(name, kind, "norm_layer", norm_layer)


def timm_activation(name: str, kind: str, act_layer) -> str:
    if act_layer not in ACTIVATIONS:
        refuse_option(name, kind, "act_layer", act_layer)
    return ACTIVATIONS[act_layer]


def trunk_embedding_rules(trunk: str) -> list[KeyRule]:
    """A ViT trunk's embeddings <-> timm's under `trunk`: the patch embedding's convolution, the
    class token [W] (timm: [1, 1, W]), the positions [N, W] (timm: [1, N, W]), the norm before the
    blocks."""
    return [
        rule(r"vision_tower\.patch_embedding\." + PARAMETER, trunk + "patch_embed.proj.{param}"),
        rule(r"vision_tower\.class_embedding", trunk + "cls_token", transform="squeeze2"),
        rule(r"vision_tower\.position_embedding", trunk + "pos_embed", transform="squeeze1"),
        rule(r"vision_tower\.norm_pre\." + PARAMETER, trunk + "norm_pre.{param}"),
    ]


def trunk_block_rules(ours: str, theirs: str) -> list[KeyRule]:
    """A cliplab `TransformerBlock` under `ours` (a regex with the block index as group 0) <->
    timm's pre-norm block under `theirs` (a format string): its ViT `Block`'s names, which Swin's
    block shares but for the layer scales."""
    return renamed(ours, theirs, {
        "norm_attn.": "norm1", "attn.qkv.": "attn.qkv", "attn.out.": "attn.proj", "scale_attn.gamma": "ls1.gamma",
        "norm_mlp.": "norm2", "mlp.fc.": "mlp.fc1", "mlp.proj.": "mlp.fc2", "scale_mlp.gamma": "ls2.gamma"})


def trunk_head_rules(config, prefix: str) -> list[KeyRule]:
    """Final norms and the projection (timm's classifier in the trunk, or open_clip's head)."""
    trunk = prefix + "trunk."
    return [
        rule(r"vision_tower\.norm\." + PARAMETER, trunk + "norm.{param}"),
        rule(r"vision_tower\.fc_norm\." + PARAMETER, trunk + "fc_norm.{param}"),
        rule(r"image_projection\." + PARAMETER,
             trunk + "head.{param}" if config.timm_classifier else prefix + "head.proj.{param}"),
    ]


def attention_pool_rules(trunk: str) -> list[KeyRule]:
    """cliplab's `layers.ProbePooler` at `vision_tower.pooler` <-> timm's AttentionPoolLatent at
    `trunk` + "attn_pool" (SigLIP's MAP head, PE-Core's attention pooling)."""
    ours, theirs = r"vision_tower\.pooler\.", trunk + "attn_pool."
    return [rule(ours + "probe", theirs + "latent", transform="squeeze2"),
            *renamed(ours, theirs, {"attn.query.": "q", "attn.key_value.": "kv", "attn.out.": "proj", "norm.": "norm",
                                    "mlp.fc.": "mlp.fc1", "mlp.proj.": "mlp.fc2"})]


def has_parameters(item: nn.Module | None) -> bool:
    return item is not None and any(True for _ in item.parameters())


def timm_groups(stem: list[GroupItem], blocks: list[nn.Module], norm: nn.Module, head: list[nn.Module | None],
                timm_classifier: bool) -> list[list[GroupItem]]:
    """timm's `group_matcher` groups, input to output: the stem; each block, the final norm joining
    the last (timm's `(99999,)` ordinal); then what the matcher leaves unmatched (fc_norm, the
    attention pool, the classifier) as one group, present when it holds anything. With
    timm_classifier the classifier is the model's projection, added to that last group by the
    model (`projection_locked`), so the group is there even when empty."""
    groups = [stem, *([block] for block in blocks)]
    groups[-1] = [*groups[-1], norm]
    unmatched = [item for item in head if has_parameters(item)]
    if unmatched or timm_classifier:
        groups.append(unmatched)
    return groups


def projection_locked(vision) -> bool:
    """open_clip's TimmModel.lock freezes `visual.trunk` only: the projection is locked when it is
    timm's classifier in the trunk, never when it is open_clip's `visual.head`."""
    return vision.timm_classifier


def timm_family(*, kind: str, summary: str, config: type, build: type, fsdp_units: Callable, read: Callable,
                write: Callable, rules: Callable, projection_locked: Callable = projection_locked,
                lora_targets: Callable = transformer_lora_targets,
                resize_positions: PositionsResize | None = None) -> TowerFamily:
    """The `TowerFamily` of a timm tower as open_clip's `TimmModel` wraps it: open_clip's sections
    naming one of the family's timm models are its (`recognising`), the lock groups are the tower's
    `parameter_groups` (timm's group matcher), and the activation is none of open_clip's: timm towers
    use exact GELU whatever its quick_gelu flag says. projection_locked: whether `TimmModel.lock`
    freezes the projection (by default when it is timm's classifier in the trunk); lora_targets and
    resize_positions: as `TowerFamily`'s."""
    return TowerFamily(kind=kind, side="vision", summary=summary, config=config, build=build,
                       lock_groups=build.parameter_groups, fsdp_units=fsdp_units, projection_locked=projection_locked,
                       open_clip=OpenClipForm(recognises=recognising(kind), read=read, write=write,
                                              activation=lambda vision: None, rules=rules),
                       lora_targets=lora_targets, resize_positions=resize_positions)
