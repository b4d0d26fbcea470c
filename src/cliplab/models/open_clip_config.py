"""open_clip model configs (`model_cfg`: embed_dim, vision_cfg, text_cfg, ...) <-> `ModelConfig`.

One converter serves both the built-in open_clip names (`open_clip_configs.json`: open_clip
3.3.0's own 144 JSON files, written by `scripts/write_open_clip_configs.py`) and the `model_cfg` of
a hub directory's `open_clip_config.json`. Defaults are open_clip's (`CLIPVisionCfg`, `CLIPTextCfg`,
`MultimodalCfg`). The towers are their families' business (`cliplab.models.families`): each
section goes to the registered family that recognises it (open_clip's own ViT, ResNet and text
transformer; timm and Hugging Face towers as their families are added), which reads it and writes
it back; a section no registered family takes is refused with `UnsupportedArchitectureError`
naming the family it needs. What is left here is the model level:

    open_clip                                  cliplab
    quick_gelu                                 activation="quick_gelu" in every tower that
                                               follows the flag (open_clip's own)
    init_logit_bias                            kind "siglip"
    multimodal_cfg                             kind "coca", decoder layout "split"

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
from cliplab.errors import MissingModelFilesError, UnsupportedArchitectureError, UserError
from cliplab.models.config import DecoderConfig, ModelConfig
from cliplab.models.families import OpenClipContext, family_of, open_clip_family
from cliplab.models.families.open_clip_sections import UNSUPPORTED, check_known, check_supported, refuse

__all__ = ["UnsupportedArchitectureError", "builtin_open_clip_config", "builtin_open_clip_names",
           "config_from_open_clip", "config_to_open_clip", "known_open_clip_names", "open_clip_name_config"]

BUILTIN_CONFIGS_FILE = Path(__file__).resolve().parent / "open_clip_configs.json"
OPEN_CLIP_DEFAULT_LOGIT_SCALE = math.log(1 / 0.07)

_IGNORED_MULTIMODAL_KEYS = {"context_length", "vocab_size", "dim_head", "n_queries", "attn_pooler_heads",
                            "mlp_ratio", "norm_kwargs",
                            "output_tokens", "hf_tokenizer_name", "tokenizer_kwargs", "tokenizer_mode",
                            "pad_id", "eos_id", "embed_cls", "no_causal_mask", "pool_type",
                            "final_ln_after_pool", "proj_type", "proj_bias"}
_TOP_KEYS = {"embed_dim", "vision_cfg", "text_cfg", "multimodal_cfg", "quick_gelu", "custom_text",
             "init_logit_scale", "init_logit_bias", "nonscalar_logit_scale"}


def known_open_clip_names() -> list[str]:
    """Every built-in name of open_clip 3.3.0 (144), built or not."""
    return list(_builtin_configs())


def builtin_open_clip_names() -> list[str]:
    """The built-in open_clip names cliplab builds: those whose towers' families are registered."""
    return list(_buildable_names())


def builtin_open_clip_config(name: str) -> dict:
    """open_clip's `model_cfg` dict for a built-in name, built or not (a copy); KeyError when unknown."""
    return copy.deepcopy(_builtin_configs()[name])


def open_clip_name_config(name: str) -> ModelConfig:
    """The ModelConfig of a built-in open_clip name; UnsupportedArchitectureError ("open_clip model
    'MobileCLIP-S1': ... needs the timm tower family 'timm_fastvit' ...") for one cliplab does not build."""
    try:
        return config_from_open_clip(builtin_open_clip_config(name))
    except (UnsupportedArchitectureError, MissingModelFilesError) as error:
        raise type(error)(f"open_clip model {name!r}: {error}") from error


@lru_cache(maxsize=1)
def _builtin_configs() -> dict[str, dict]:
    with open(BUILTIN_CONFIGS_FILE) as handle:
        return json.load(handle)["model_configs"]


@lru_cache(maxsize=1)
def _buildable_names() -> tuple[str, ...]:
    buildable = []
    for name, model_cfg in _builtin_configs().items():
        try:
            config_from_open_clip(model_cfg)
        except UnsupportedArchitectureError:
            continue
        except MissingModelFilesError:  # a Hugging Face text model's config.json, not on this machine
            pass
        buildable.append(name)
    return tuple(buildable)


def _section(values: Any, where: str) -> dict:
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise UserError(f"{where} must be a JSON object, got {type(values).__name__}")
    return values


def decoder_from_open_clip(multimodal: dict, text, activation: str, vocab_size: int) -> DecoderConfig:
    """open_clip's CoCa decoder; vocab_size: text_cfg.vocab_size, what open_clip's decoder predicts
    (kept in the DecoderConfig only where the text tower has another, a Hugging Face one)."""
    check_known(multimodal, {"width", "heads", "layers", "ls_init_value", *_IGNORED_MULTIMODAL_KEYS,
                             *UNSUPPORTED}, "multimodal_cfg")
    check_supported(multimodal, "multimodal_cfg")
    width = multimodal.get("width", 512)
    if width != text.width:
        raise UnsupportedArchitectureError(f"multimodal_cfg.width ({width}) differs from text_cfg.width "
                                           f"({text.width}): cliplab's decoder continues the text tower")
    # open_clip 3.3.0 builds its decoder with mlp_ratio 4 and LayerNorm eps 1e-5 whatever
    # multimodal_cfg says (both keys are ignored there, so they are ignored here).
    return DecoderConfig(layers=multimodal.get("layers", 12), heads=multimodal.get("heads", 8), layout="split",
                         layer_scale=multimodal.get("ls_init_value"), activation=activation,
                         vocab_size=None if vocab_size == text.vocab_size else vocab_size)


def config_from_open_clip(model_cfg: dict, preprocess: PreprocessConfig | None = None, *,
                          directory: Path | None = None, weights_from_checkpoint: bool = False) -> ModelConfig:
    """The ModelConfig of an open_clip `model_cfg` dict. preprocess: the image preprocessing (None:
    open_clip's defaults at the model's image size). directory: the checkpoint's directory, where
    a tower's own files are looked for first (a Hugging Face text model's config.json);
    weights_from_checkpoint: the weights will come from that checkpoint (no tower is to start from
    pretrained weights of its own, as in open_clip's factory). UnsupportedArchitectureError names
    any key cliplab cannot build (or the tower family it needs), MissingModelFilesError the files
    a tower needs that are not here; the other open_clip validation errors become UserError."""
    model_cfg = _section(model_cfg, "model_cfg")
    check_known(model_cfg, _TOP_KEYS, "model_cfg")
    if "embed_dim" not in model_cfg:
        raise UserError("model_cfg has no embed_dim")
    context = OpenClipContext(embed_dim=model_cfg["embed_dim"], quick_gelu=bool(model_cfg.get("quick_gelu", False)),
                              directory=directory, weights_from_checkpoint=weights_from_checkpoint)
    try:
        towers = {}
        for side in ("vision", "text"):
            section = _section(model_cfg.get(f"{side}_cfg"), f"{side}_cfg")
            towers[side] = open_clip_family(side, section).open_clip.read(section, context)
        decoder = None
        if model_cfg.get("multimodal_cfg") is not None:
            decoder = decoder_from_open_clip(_section(model_cfg["multimodal_cfg"], "multimodal_cfg"), towers["text"],
                                             context.activation,
                                             _section(model_cfg.get("text_cfg"), "text_cfg").get("vocab_size", 49408))
        logit_bias = model_cfg.get("init_logit_bias")
        kind = "coca" if decoder is not None else ("siglip" if logit_bias is not None else "clip")
        return ModelConfig(kind=kind, embed_dim=context.embed_dim, vision=towers["vision"], text=towers["text"],
                           decoder=decoder, preprocess=preprocess if preprocess is not None else PreprocessConfig(
                               image_size=towers["vision"].image_size),
                           init_logit_scale=model_cfg.get("init_logit_scale", OPEN_CLIP_DEFAULT_LOGIT_SCALE),
                           init_logit_bias=logit_bias)
    except (TypeError, ValueError) as error:
        raise UserError(f"open_clip model_cfg: {error}") from error


def _shared_activation(config: ModelConfig) -> str:
    """The activation open_clip's `quick_gelu` flag must select: the one every tower that follows
    the flag uses (their families say which, `OpenClipForm.activation`), GELU when none does."""
    towers = [("vision", config.vision), ("text", config.text)]
    following = {family_of(tower).open_clip.activation(tower) for _, tower in towers}
    if config.decoder is not None:
        towers.append(("decoder", config.decoder))
        following.add(config.decoder.activation)
    following.discard(None)
    if len(following) > 1 or not following <= {"gelu", "quick_gelu"}:
        used = ", ".join(f"{name}.activation={getattr(tower, 'activation', None)!r}" for name, tower in towers)
        refuse(f"open_clip uses one activation, GELU or QuickGELU, in every tower; got {used}")
    return following.pop() if following else "gelu"


def _open_clip_form(side: str, tower):
    form = family_of(tower).open_clip
    if form is None:
        refuse(f"{side}.kind={tower.kind!r} (open_clip has no such tower)")
    return form


def config_to_open_clip(config: ModelConfig) -> dict:
    """The open_clip `model_cfg` that builds `config`'s architecture (inverse of
    `config_from_open_clip`); UnsupportedArchitectureError names what open_clip cannot represent."""
    forms = {side: _open_clip_form(side, getattr(config, side)) for side in ("vision", "text")}
    activation = _shared_activation(config)
    context = OpenClipContext(embed_dim=config.embed_dim, quick_gelu=activation == "quick_gelu")
    model_cfg: dict[str, Any] = {"embed_dim": config.embed_dim,
                                 **{f"{side}_cfg": form.write(getattr(config, side), context)
                                    for side, form in forms.items()}}
    if activation == "quick_gelu":
        model_cfg["quick_gelu"] = True
    if config.init_logit_bias is not None:
        model_cfg["init_logit_bias"] = config.init_logit_bias
    if config.decoder is not None:
        decoder = config.decoder
        if decoder.layout != "split" or decoder.mlp_width not in (None, 4 * config.text.width) \
                or decoder.mlp_ratio != 4 or decoder.norm_eps != 1e-5:
            refuse("open_clip's CoCa decoder is the 'split' layout with MLP ratio 4 and LayerNorm eps 1e-5")
        vocab_size = config.decoder_vocab_size
        written = model_cfg["text_cfg"].setdefault("vocab_size", vocab_size)  # what open_clip's decoder reads
        if written != vocab_size:
            refuse(f"decoder.vocab_size={vocab_size} differs from the text tower's {written}: open_clip's CoCa "
                   "decoder predicts text_cfg.vocab_size ids")
        model_cfg["multimodal_cfg"] = {"width": config.text.width, "heads": decoder.heads, "layers": decoder.layers,
                                       "context_length": config.text.context_length,
                                       "vocab_size": vocab_size,
                                       **({"ls_init_value": decoder.layer_scale} if decoder.layer_scale else {})}
        model_cfg["custom_text"] = True
        for section in ("vision_cfg", "text_cfg"):  # open_clip's CoCa unpacks (pooled, tokens)
            model_cfg[section]["output_tokens"] = True
    return model_cfg
