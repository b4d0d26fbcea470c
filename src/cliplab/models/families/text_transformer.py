"""Tower family "transformer": cliplab's text transformer (`towers.text_transformer`, `TextConfig`),
which is also open_clip's and OpenAI's own text tower and Hugging Face CLIP's and SigLIP's.

    open_clip text_cfg                         TextConfig
    pool_type argmax / eos / last              pool argmax / eos (eos_id) / last
    embed_cls                                  pool "cls", class_token_position, padding "shifted",
                                               final_norm "pooled" (open_clip's CoCa text tower)
    no_causal_mask                             causal=False
    proj_bias / proj_type "none"               projection "linear_bias" / "none"
    (every tower)                              padding_mask="none": open_clip masks no padding
    quick_gelu (top level)                     activation="quick_gelu"
    act_kwargs {"approximate": "tanh"}         activation="gelu_tanh" (SigLIP2's text tower)

    cliplab                                    open_clip (under "" in CLIP, "text." otherwise)
    text_tower.token_embedding / position_e.   token_embedding / positional_embedding
    text_tower.class_embedding / norm_final    cls_emb / ln_final
    text_tower.transformer.blocks.N            transformer.resblocks.N
    text_projection.weight [E, W]              text_projection [W, E] (transposed; with a bias:
                                               text_projection.{weight,bias}, a Linear)

    cliplab                                    Hugging Face (CLIPModel / SiglipModel)
    text_tower.token_embedding / position_e.   text_model.embeddings.token_embedding / position_embedding
    text_tower.transformer.blocks.N            text_model.encoder.layers.N
    text_tower.norm_final                      text_model.final_layer_norm
    text_projection                            text_projection (CLIP) / text_model.head (SigLIP)
"""

from __future__ import annotations

from typing import Any

from cliplab.errors import UnsupportedArchitectureError
from cliplab.models.families.layouts import block_rules, encoder_rules
from cliplab.models.families.open_clip_sections import (TEXT_KEYS, check_known, check_supported, mlp_ratio,
                                                         norm_eps, norm_kwargs, refuse)
from cliplab.models.families.position_rules import sequence_positions
from cliplab.models.families.spec import OpenClipContext, OpenClipForm, TowerFamily, each_transformer_block
from cliplab.models.key_rules import PARAMETER, KeyRule, rule
from cliplab.models.tower_configs import TextConfig
from cliplab.models.towers.locking import open_clip_layout
from cliplab.models.towers.text_transformer import TextTransformer


def recognises(text: dict) -> bool:
    """open_clip's own text transformer: no Hugging Face model named."""
    return not text.get("hf_model_name")


TANH_GELU = {"approximate": "tanh"}  # open_clip's act_kwargs for nn.GELU's tanh approximation


def _activation(text: dict, context: OpenClipContext) -> str:
    """The activation open_clip builds: GELU or QuickGELU by the top-level flag, GELU's tanh
    approximation with `act_kwargs` {"approximate": "tanh"} (the only act_kwargs cliplab reads)."""
    act_kwargs = text.get("act_kwargs")
    if act_kwargs in (None, {}):
        return context.activation
    if act_kwargs != TANH_GELU or context.quick_gelu:
        flag = " with quick_gelu" if context.quick_gelu else ""
        raise UnsupportedArchitectureError(f"text_cfg.act_kwargs={act_kwargs!r}{flag}: cliplab reads {TANH_GELU} "
                                           "on GELU only")
    return "gelu_tanh"


def read(text: dict, context: OpenClipContext) -> TextConfig:
    check_known(text, TEXT_KEYS, "text_cfg")
    activation = _activation(text, context)
    check_supported({key: value for key, value in text.items() if key != "act_kwargs"}, "text_cfg")
    projection = "none" if text.get("proj_type", "linear") == "none" else (
        "linear_bias" if text.get("proj_bias", False) else "linear")
    options: dict[str, Any]
    if text.get("embed_cls", False):
        options = {"pool": "cls", "class_token_position": True, "padding_mask": "shifted", "final_norm": "pooled"}
    else:
        pool = text.get("pool_type", "argmax")
        if pool not in ("argmax", "eos", "last"):
            raise UnsupportedArchitectureError(f"text_cfg.pool_type={pool!r}: cliplab supports 'argmax', "
                                               "'eos' and 'last'")
        options = {"pool": pool, "padding_mask": "none"}
        if pool == "eos":
            options["eos_id"] = text.get("eos_id", 2)
    return TextConfig(context_length=text.get("context_length", 77), vocab_size=text.get("vocab_size", 49408),
                      width=text.get("width", 512), heads=text.get("heads", 8), layers=text.get("layers", 12),
                      mlp_ratio=text.get("mlp_ratio", 4.0), layer_scale=text.get("ls_init_value"),
                      causal=not text.get("no_causal_mask", False), pad_id=text.get("pad_id", 0),
                      projection=projection, activation=activation, norm_eps=norm_eps(text, "text_cfg"),
                      **options)


def write(text: TextConfig, context: OpenClipContext) -> dict:
    if text.position != "learned":
        refuse(f"text.position={text.position!r}")
    values = {"context_length": text.context_length, "vocab_size": text.vocab_size, "width": text.width,
              "heads": text.heads, "layers": text.layers, "mlp_ratio": mlp_ratio("text", text),
              "pad_id": text.pad_id, **norm_kwargs(text.norm_eps)}
    if text.layer_scale is not None:
        values["ls_init_value"] = text.layer_scale
    if text.activation == "gelu_tanh":
        values["act_kwargs"] = dict(TANH_GELU)
    if text.pool == "cls":
        if not (text.class_token_position and text.padding_mask == "shifted" and text.final_norm == "pooled"):
            refuse("a text class token as open_clip lays it out needs class_token_position, padding_mask="
                   "'shifted' and final_norm='pooled'")
        values["embed_cls"] = True
    elif text.pool in ("argmax", "eos", "last") and text.padding_mask == "none" and text.final_norm == "tokens":
        values["pool_type"] = text.pool
        if text.pool == "eos":
            values["eos_id"] = text.eos_id
    else:
        refuse(f"text.pool={text.pool!r} with padding_mask={text.padding_mask!r}, final_norm={text.final_norm!r} "
               "(open_clip pools at argmax / eos / last over unmasked padding, or with its class token)")
    if not text.causal:
        values["no_causal_mask"] = True
    if text.projection == "linear_bias":
        values["proj_bias"] = True
    elif text.projection == "none":
        values["proj_type"] = "none"
    return values


def open_clip_rules(text: TextConfig, prefix: str) -> list[KeyRule]:
    projection = ([rule(r"text_projection\." + PARAMETER, prefix + "text_projection.{param}")]
                  if text.projection == "linear_bias" else
                  [rule(r"text_projection\.weight", prefix + "text_projection", transform="transpose")])
    return [
        rule(r"text_tower\.token_embedding\.weight", prefix + "token_embedding.weight"),
        rule(r"text_tower\.position_embedding", prefix + "positional_embedding"),
        rule(r"text_tower\.class_embedding", prefix + "cls_emb"),
        *block_rules(r"text_tower\.transformer\.blocks\.(\d+)", prefix + "transformer.resblocks.{0}"),
        rule(r"text_tower\.norm_final\." + PARAMETER, prefix + "ln_final.{param}"),
        *projection,
    ]


def hf_rules(text: TextConfig, model_type: str) -> list[KeyRule]:
    """CLIPModel's / SiglipModel's text half with its projection."""
    projection = (rule(r"text_projection\.weight", "text_projection.weight") if model_type == "clip" else
                  rule(r"text_projection\." + PARAMETER, "text_model.head.{param}"))
    return [
        rule(r"text_tower\.token_embedding\.weight", "text_model.embeddings.token_embedding.weight"),
        rule(r"text_tower\.position_embedding", "text_model.embeddings.position_embedding.weight"),
        *encoder_rules(r"text_tower\.transformer\.blocks", "text_model.encoder.layers"),
        rule(r"text_tower\.norm_final\." + PARAMETER, "text_model.final_layer_norm.{param}"),
        projection,
    ]


FAMILY = TowerFamily(
    kind="transformer", side="text", config=TextConfig, build=TextTransformer,
    summary="cliplab's text transformer: open_clip's and OpenAI's own, HF CLIP and SigLIP text towers",
    lock_groups=open_clip_layout(TextTransformer.parameter_groups), fsdp_units=each_transformer_block,
    # GELU's tanh approximation comes from act_kwargs on top of GELU, so it needs the flag off.
    open_clip=OpenClipForm(recognises=recognises, read=read, write=write,
                           activation=lambda text: "gelu" if text.activation == "gelu_tanh" else text.activation,
                           rules=open_clip_rules),
    hf_rules=hf_rules,
    resize_positions=sequence_positions("position_embedding"),
)
