"""open_clip model configs (`model_cfg`: embed_dim, vision_cfg, text_cfg, ...) <-> `ModelConfig`.

One converter serves both the built-in open_clip names (`open_clip_configs.json`, open_clip 3.3.0's
own JSON files, written by `scripts/write_open_clip_configs.py`) and the `model_cfg` of a hub
directory's `open_clip_config.json`. Defaults are open_clip's (`CLIPVisionCfg`, `CLIPTextCfg`,
`MultimodalCfg`); the mapping:

    open_clip                                  cliplab
    quick_gelu                                 activation="quick_gelu" in every tower
    vision_cfg.layers [4 ints]                 vision.kind="resnet", heads = 32 width / head_width,
                                               projection "linear_bias" (attnpool.c_proj)
    vision_cfg.head_width                      vision.heads = width / head_width
    vision_cfg.no_ln_pre / final_ln_after_pool norm_pre=False / final_norm="pooled"
    vision_cfg.pool_type "tok" / "avg"         pool "cls" / "mean" (a class token either way)
    vision_cfg.attentional_pool                pool "attention" with queries of width embed_dim
    vision_cfg.ls_init_value                   layer_scale
    text_cfg.pool_type argmax / eos / last     text.pool argmax / eos (eos_id) / last
    text_cfg.embed_cls                         pool "cls", class_token_position, padding "shifted",
                                               final_norm "pooled" (open_clip's CoCa text tower)
    text_cfg.no_causal_mask                    causal=False
    (every other text tower)                   padding_mask="none": open_clip masks no padding
    multimodal_cfg                             kind "coca", decoder layout "split"

Anything open_clip can express that cliplab's towers cannot (timm or HF towers, custom attention
blocks, sin-cos positions, ...) is refused with `UnsupportedArchitectureError` naming the key.
Tokenizer keys (hf_tokenizer_name, tokenizer_kwargs, tokenizer_mode) are not architecture: they
are read where the tokenizer is chosen.
"""

from __future__ import annotations

import copy
import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Any

from cliplab.data.transforms import PreprocessConfig
from cliplab.errors import UserError
from cliplab.models.config import DecoderConfig, ModelConfig
from cliplab.models.tower_configs import RESNET_STRIDE, TextConfig, VisionConfig

BUILTIN_CONFIGS_FILE = Path(__file__).resolve().parent / "open_clip_configs.json"
OPEN_CLIP_DEFAULT_LOGIT_SCALE = math.log(1 / 0.07)

# Keys of open_clip's config dataclasses that change nothing cliplab builds (output_tokens: cliplab
# towers always return their tokens) or that choose the tokenizer.
_IGNORED_VISION_KEYS = {"output_tokens"}
_IGNORED_TEXT_KEYS = {"output_tokens", "hf_tokenizer_name", "tokenizer_kwargs", "tokenizer_mode",
                      "final_ln_after_pool"}  # open_clip 3.3.0's TextTransformer ignores it too
_IGNORED_MULTIMODAL_KEYS = {"context_length", "vocab_size", "dim_head", "n_queries", "attn_pooler_heads",
                            "mlp_ratio", "norm_kwargs",
                            "output_tokens", "hf_tokenizer_name", "tokenizer_kwargs", "tokenizer_mode",
                            "pad_id", "eos_id", "embed_cls", "no_causal_mask", "pool_type",
                            "final_ln_after_pool", "proj_type", "proj_bias"}
_TOP_KEYS = {"embed_dim", "vision_cfg", "text_cfg", "multimodal_cfg", "quick_gelu", "custom_text",
             "init_logit_scale", "init_logit_bias", "nonscalar_logit_scale"}
# open_clip keys whose non-default values need towers cliplab does not build.
_UNSUPPORTED = {
    "timm_model_name": None, "hf_model_name": None, "pos_embed_type": "learnable", "block_type": None,
    "qk_norm": False, "scaled_cosine_attn": False, "scale_heads": False, "scale_attn_inner": False,
    "scale_attn": False, "scale_fc": False, "act_kwargs": None,
}


class UnsupportedArchitectureError(UserError):
    """An open_clip, OpenAI or Hugging Face architecture that cliplab's towers cannot represent."""


def builtin_open_clip_names() -> list[str]:
    """The open_clip model names cliplab builds (open_clip 3.3.0's, minus timm / HF-text towers)."""
    return list(_builtin_configs())


def builtin_open_clip_config(name: str) -> dict:
    """open_clip's `model_cfg` dict for a built-in name (a copy); KeyError when unknown."""
    return copy.deepcopy(_builtin_configs()[name])


@lru_cache(maxsize=1)
def _builtin_configs() -> dict[str, dict]:
    with open(BUILTIN_CONFIGS_FILE) as handle:
        return json.load(handle)["model_configs"]


def _section(values: Any, where: str) -> dict:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserError(f"{where} must be a JSON object, got {type(values).__name__}")
    return values


def _check_supported(section: dict, where: str) -> None:
    for key, default in _UNSUPPORTED.items():
        if section.get(key, default) not in (default, {}):
            raise UnsupportedArchitectureError(
                f"{where}.{key}={section[key]!r} needs a tower cliplab does not build "
                f"(cliplab reads open_clip's own transformer and ResNet towers)")


def _norm_eps(section: dict, where: str) -> float:
    norm_kwargs = section.get("norm_kwargs") or {}
    unknown = sorted(set(norm_kwargs) - {"eps"})
    if unknown:
        raise UnsupportedArchitectureError(f"{where}.norm_kwargs {unknown}: only 'eps' is supported")
    return float(norm_kwargs.get("eps", 1e-5))


def _check_known(section: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(section) - known)
    if unknown:
        raise UnsupportedArchitectureError(f"{where} has keys cliplab does not know: {unknown}")


_VISION_KEYS = {"layers", "width", "head_width", "mlp_ratio", "patch_size", "image_size", "ls_init_value",
                "patch_dropout", "attentional_pool", "attn_pooler_queries", "attn_pooler_heads", "no_ln_pre",
                "final_ln_after_pool", "pool_type", "norm_kwargs", *_IGNORED_VISION_KEYS, *_UNSUPPORTED,
                "timm_model_pretrained", "timm_pool", "timm_proj", "timm_proj_bias", "timm_drop",
                "timm_drop_path"}
_TEXT_KEYS = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio", "ls_init_value",
              "embed_cls", "pad_id", "eos_id", "no_causal_mask", "pool_type", "proj_bias", "proj_type",
              "norm_kwargs", *_IGNORED_TEXT_KEYS, *_UNSUPPORTED, "hf_model_pretrained", "hf_proj_type",
              "hf_pooler_type"}


def _image_size(values: Any) -> int:
    if isinstance(values, (list, tuple)):
        if len(values) != 2 or values[0] != values[1]:
            raise UnsupportedArchitectureError(f"vision_cfg.image_size={values!r}: cliplab models take "
                                               "square images")
        values = values[0]
    return int(values)


def vision_from_open_clip(vision: dict, embed_dim: int, activation: str) -> VisionConfig:
    _check_known(vision, _VISION_KEYS, "vision_cfg")
    _check_supported(vision, "vision_cfg")
    layers, width = vision.get("layers", 12), vision.get("width", 768)
    head_width = vision.get("head_width", 64)
    common = {"image_size": _image_size(vision.get("image_size", 224)), "width": width,
              "activation": activation, "norm_eps": _norm_eps(vision, "vision_cfg")}
    if isinstance(layers, (list, tuple)):
        return VisionConfig(kind="resnet", layers=list(layers), heads=width * RESNET_STRIDE // head_width,
                            projection="linear_bias", **common)
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
        options = {"pool": "attention", "final_norm": "pooled", "attention_pool_width": embed_dim,
                   "attention_pool_queries": vision.get("attn_pooler_queries", 256),
                   "attention_pool_heads": vision.get("attn_pooler_heads", 8)}
    return VisionConfig(kind="vit", layers=layers, heads=width // head_width, patch_size=vision.get("patch_size", 16),
                        mlp_ratio=vision.get("mlp_ratio", 4.0), class_token=True,
                        norm_pre=not vision.get("no_ln_pre", False), layer_scale=vision.get("ls_init_value"),
                        patch_dropout=vision.get("patch_dropout", 0.0), **options, **common)


def text_from_open_clip(text: dict, activation: str) -> TextConfig:
    _check_known(text, _TEXT_KEYS, "text_cfg")
    _check_supported(text, "text_cfg")
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
                      projection=projection, activation=activation, norm_eps=_norm_eps(text, "text_cfg"),
                      **options)


def decoder_from_open_clip(multimodal: dict, text: TextConfig, activation: str) -> DecoderConfig:
    _check_known(multimodal, {"width", "heads", "layers", "ls_init_value", *_IGNORED_MULTIMODAL_KEYS,
                              *_UNSUPPORTED}, "multimodal_cfg")
    _check_supported(multimodal, "multimodal_cfg")
    width = multimodal.get("width", 512)
    if width != text.width:
        raise UnsupportedArchitectureError(f"multimodal_cfg.width ({width}) differs from text_cfg.width "
                                           f"({text.width}): cliplab's decoder continues the text tower")
    # open_clip 3.3.0 builds its decoder with mlp_ratio 4 and LayerNorm eps 1e-5 whatever
    # multimodal_cfg says (both keys are ignored there, so they are ignored here).
    return DecoderConfig(layers=multimodal.get("layers", 12), heads=multimodal.get("heads", 8), layout="split",
                         layer_scale=multimodal.get("ls_init_value"), activation=activation)


def config_from_open_clip(model_cfg: dict, preprocess: PreprocessConfig | None = None) -> ModelConfig:
    """The ModelConfig of an open_clip `model_cfg` dict. preprocess: the image preprocessing (None:
    open_clip's defaults at the model's image size). UnsupportedArchitectureError names any key
    cliplab cannot build; the other open_clip validation errors become UserError."""
    model_cfg = _section(model_cfg, "model_cfg")
    _check_known(model_cfg, _TOP_KEYS, "model_cfg")
    if "embed_dim" not in model_cfg:
        raise UserError("model_cfg has no embed_dim")
    activation = "quick_gelu" if model_cfg.get("quick_gelu", False) else "gelu"
    embed_dim = model_cfg["embed_dim"]
    try:
        vision = vision_from_open_clip(_section(model_cfg.get("vision_cfg"), "vision_cfg"), embed_dim, activation)
        text = text_from_open_clip(_section(model_cfg.get("text_cfg"), "text_cfg"), activation)
        decoder = None
        if model_cfg.get("multimodal_cfg") is not None:
            decoder = decoder_from_open_clip(_section(model_cfg["multimodal_cfg"], "multimodal_cfg"), text,
                                             activation)
        logit_bias = model_cfg.get("init_logit_bias")
        kind = "coca" if decoder is not None else ("siglip" if logit_bias is not None else "clip")
        return ModelConfig(kind=kind, embed_dim=embed_dim, vision=vision, text=text, decoder=decoder,
                           preprocess=preprocess if preprocess is not None else PreprocessConfig(
                               image_size=vision.image_size),
                           init_logit_scale=model_cfg.get("init_logit_scale", OPEN_CLIP_DEFAULT_LOGIT_SCALE),
                           init_logit_bias=logit_bias)
    except (TypeError, ValueError) as error:
        raise UserError(f"open_clip model_cfg: {error}") from error


def _refuse(what: str) -> None:
    raise UnsupportedArchitectureError(f"open_clip cannot represent this model: {what}")


def _mlp_ratio(prefix: str, tower) -> float:
    """open_clip's mlp_ratio for a tower whose hidden width int(width * ratio) must come out exact."""
    hidden = tower.mlp_width if tower.mlp_width is not None else int(tower.width * tower.mlp_ratio)
    ratio = tower.mlp_ratio if tower.mlp_width is None else hidden / tower.width
    if int(tower.width * ratio) != hidden:
        _refuse(f"{prefix}.mlp_width {hidden} is not int(width * ratio) for any ratio open_clip reads back")
    return ratio


def _shared_activation(config: ModelConfig) -> str:
    towers = [("vision", config.vision), ("text", config.text)]
    if config.decoder is not None:
        towers.append(("decoder", config.decoder))
    activations = {tower.activation for _, tower in towers if not (tower is config.vision
                                                                  and config.vision.kind == "resnet")}
    if len(activations) != 1 or not activations <= {"gelu", "quick_gelu"}:
        _refuse(f"open_clip uses one activation, GELU or QuickGELU, in every tower; got "
                f"{', '.join(f'{name}.activation={tower.activation!r}' for name, tower in towers)}")
    return activations.pop()


def _norm_kwargs(prefix: str, eps: float) -> dict:
    return {} if eps == 1e-5 else {"norm_kwargs": {"eps": eps}}


def _vision_to_open_clip(config: ModelConfig) -> dict:
    vision = config.vision
    if vision.kind == "resnet":
        if vision.projection != "linear_bias":
            _refuse("a ResNet image tower projects with a biased linear layer (vision.projection='linear_bias')")
        return {"layers": list(vision.layers), "width": vision.width, "image_size": vision.image_size,
                "head_width": vision.output_width // vision.heads, "patch_size": None}
    if vision.kind != "vit":
        _refuse(f"vision.kind={vision.kind!r} (open_clip has ViT and ModifiedResNet towers)")
    for name, value, allowed in (("class_token", vision.class_token, True), ("patch_bias", vision.patch_bias, False)):
        if value != allowed:
            _refuse(f"vision.{name}={value!r}")
    values = {"layers": vision.layers, "width": vision.width, "head_width": vision.width // vision.heads,
              "mlp_ratio": _mlp_ratio("vision", vision), "patch_size": vision.patch_size,
              "image_size": vision.image_size, **_norm_kwargs("vision", vision.norm_eps)}
    if vision.layer_scale is not None:
        values["ls_init_value"] = vision.layer_scale
    if vision.patch_dropout:
        values["patch_dropout"] = vision.patch_dropout
    if not vision.norm_pre:
        values["no_ln_pre"] = True
    if vision.pool == "attention":
        if vision.pool_width != config.embed_dim or vision.projection != "linear":
            _refuse("open_clip's attentional pooler has queries of width embed_dim and a linear projection")
        values.update(attentional_pool=True, attn_pooler_queries=vision.attention_pool_queries,
                      attn_pooler_heads=vision.attention_pool_heads)
        return values
    if vision.pool not in ("cls", "mean") or vision.projection != "linear":
        _refuse(f"vision.pool={vision.pool!r} with projection={vision.projection!r} (open_clip pools the class "
                "token, the mean, or with its attentional pooler, and projects linearly without bias)")
    if vision.pool == "mean":
        values["pool_type"] = "avg"
    if vision.final_norm == "pooled":
        values["final_ln_after_pool"] = True
    return values


def _text_to_open_clip(text: TextConfig) -> dict:
    if text.position != "learned":
        _refuse(f"text.position={text.position!r}")
    values = {"context_length": text.context_length, "vocab_size": text.vocab_size, "width": text.width,
              "heads": text.heads, "layers": text.layers, "mlp_ratio": _mlp_ratio("text", text),
              "pad_id": text.pad_id, **_norm_kwargs("text", text.norm_eps)}
    if text.layer_scale is not None:
        values["ls_init_value"] = text.layer_scale
    if text.pool == "cls":
        if not (text.class_token_position and text.padding_mask == "shifted" and text.final_norm == "pooled"):
            _refuse("a text class token as open_clip lays it out needs class_token_position, padding_mask="
                    "'shifted' and final_norm='pooled'")
        values["embed_cls"] = True
    elif text.pool in ("argmax", "eos", "last") and text.padding_mask == "none" and text.final_norm == "tokens":
        values["pool_type"] = text.pool
        if text.pool == "eos":
            values["eos_id"] = text.eos_id
    else:
        _refuse(f"text.pool={text.pool!r} with padding_mask={text.padding_mask!r}, final_norm={text.final_norm!r} "
                "(open_clip pools at argmax / eos / last over unmasked padding, or with its class token)")
    if not text.causal:
        values["no_causal_mask"] = True
    if text.projection == "linear_bias":
        values["proj_bias"] = True
    elif text.projection == "none":
        values["proj_type"] = "none"
    return values


def config_to_open_clip(config: ModelConfig) -> dict:
    """The open_clip `model_cfg` that builds `config`'s architecture (inverse of
    `config_from_open_clip`); UnsupportedArchitectureError names what open_clip cannot represent."""
    activation = _shared_activation(config)
    model_cfg: dict[str, Any] = {"embed_dim": config.embed_dim, "vision_cfg": _vision_to_open_clip(config),
                                 "text_cfg": _text_to_open_clip(config.text)}
    if activation == "quick_gelu":
        model_cfg["quick_gelu"] = True
    if config.init_logit_bias is not None:
        model_cfg["init_logit_bias"] = config.init_logit_bias
    if config.decoder is not None:
        decoder = config.decoder
        if decoder.layout != "split" or decoder.mlp_width not in (None, 4 * config.text.width) \
                or decoder.mlp_ratio != 4 or decoder.norm_eps != 1e-5:
            _refuse("open_clip's CoCa decoder is the 'split' layout with MLP ratio 4 and LayerNorm eps 1e-5")
        model_cfg["multimodal_cfg"] = {"width": config.text.width, "heads": decoder.heads, "layers": decoder.layers,
                                       "context_length": config.text.context_length,
                                       "vocab_size": config.text.vocab_size,
                                       **({"ls_init_value": decoder.layer_scale} if decoder.layer_scale else {})}
        model_cfg["custom_text"] = True
        for section in ("vision_cfg", "text_cfg"):  # open_clip's CoCa unpacks (pooled, tokens)
            model_cfg[section]["output_tokens"] = True
    return model_cfg
