"""Hugging Face `config.json` (model_type "clip" or "siglip") <-> `ModelConfig`.

Missing keys take transformers' own defaults (CLIPTextConfig, CLIPVisionConfig, SiglipTextConfig,
SiglipVisionConfig; the numbers are below), so transformers need not be installed to load.

    Hugging Face                        cliplab
    hidden_size / intermediate_size     width / mlp_width
    num_hidden_layers / num_attention_heads   layers / heads
    hidden_act                          activation: quick_gelu, gelu, gelu_pytorch_tanh -> gelu_tanh
    layer_norm_eps                      norm_eps
    max_position_embeddings             text.context_length
    CLIP text pooling                   pool "eos" at eos_token_id; "argmax" when eos_token_id == 2
                                        (transformers' rule for configs written before the fix)
    CLIP vision                         class token, pre- and post-LayerNorm, pool "cls"
    SigLIP vision                       no class token, biased patch embedding, no pre-norm,
                                        pool "probe", no projection
    SigLIP text                         bidirectional, pool "last", biased projection (text_model.head)
    projection_dim / projection_size    embed_dim
"""

from __future__ import annotations

import math
from typing import Any

from cliplab.data.transforms import PreprocessConfig
from cliplab.errors import UserError
from cliplab.models.config import ModelConfig
from cliplab.models.open_clip_config import UnsupportedArchitectureError
from cliplab.models.tower_configs import TextConfig, VisionConfig

MODEL_TYPES = ("clip", "siglip")
_ACTIVATIONS = {"quick_gelu": "quick_gelu", "gelu": "gelu", "gelu_pytorch_tanh": "gelu_tanh"}
_HF_ACTIVATIONS = {ours: theirs for theirs, ours in _ACTIVATIONS.items()}
LEGACY_EOS_ID = 2  # transformers pools CLIP text at argmax(ids) when eos_token_id is 2

DEFAULTS = {
    ("clip", "text"): {"vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
                       "num_attention_heads": 8, "max_position_embeddings": 77, "hidden_act": "quick_gelu",
                       "layer_norm_eps": 1e-5, "eos_token_id": 49407},
    ("clip", "vision"): {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                         "num_attention_heads": 12, "num_channels": 3, "image_size": 224, "patch_size": 32,
                         "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5},
    ("siglip", "text"): {"vocab_size": 32000, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                         "num_attention_heads": 12, "max_position_embeddings": 64,
                         "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "pad_token_id": 1},
    ("siglip", "vision"): {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                           "num_attention_heads": 12, "num_channels": 3, "image_size": 224, "patch_size": 16,
                           "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "vision_use_head": True},
}
CLIP_PROJECTION_DIM = 512
CLIP_LOGIT_SCALE_INIT = 2.6592


def _tower_values(values: dict, model_type: str, tower: str) -> dict:
    section = values.get(f"{tower}_config") or {}
    if not isinstance(section, dict):
        raise UserError(f"config.json {tower}_config must be a JSON object, got {type(section).__name__}")
    return {**DEFAULTS[(model_type, tower)], **section}


def _activation(values: dict, tower: str) -> str:
    name = values["hidden_act"]
    if name not in _ACTIVATIONS:
        raise UnsupportedArchitectureError(f"config.json {tower}_config.hidden_act={name!r}: cliplab supports "
                                           f"{sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def _common(values: dict, tower: str) -> dict:
    return {"width": values["hidden_size"], "mlp_width": values["intermediate_size"],
            "layers": values["num_hidden_layers"], "heads": values["num_attention_heads"],
            "activation": _activation(values, tower), "norm_eps": values["layer_norm_eps"]}


def default_preprocess(model_type: str, image_size: int) -> PreprocessConfig:
    """What the model type's image processor does by default, at the model's image size: CLIP's
    shortest-edge resize and center crop with OpenAI's statistics; SigLIP's resize to the square
    with mean = std = 0.5 (both bicubic)."""
    if model_type == "siglip":
        return PreprocessConfig.from_hf_image_processor({"size": {"height": image_size, "width": image_size},
                                                         "image_mean": [0.5] * 3, "image_std": [0.5] * 3})
    return PreprocessConfig(image_size=image_size)


def config_from_hf(values: dict, preprocess: PreprocessConfig | None = None) -> ModelConfig:
    """The ModelConfig of a parsed HF config.json. preprocess: the directory's
    preprocessor_config.json when it has one (None: `default_preprocess`)."""
    model_type = values.get("model_type")
    if model_type not in MODEL_TYPES:
        raise UnsupportedArchitectureError(f"config.json model_type={model_type!r}: cliplab reads {MODEL_TYPES}")
    text, vision = _tower_values(values, model_type, "text"), _tower_values(values, model_type, "vision")
    if vision["num_channels"] != 3:
        raise UnsupportedArchitectureError(f"config.json vision_config.num_channels={vision['num_channels']}: "
                                           "cliplab models take RGB images")
    try:
        if model_type == "clip":
            embed_dim = values.get("projection_dim", CLIP_PROJECTION_DIM)
            eos_id = text["eos_token_id"]
            pooling = {"pool": "argmax"} if eos_id == LEGACY_EOS_ID else {"pool": "eos", "eos_id": eos_id}
            vision_config = VisionConfig(kind="vit", image_size=vision["image_size"], patch_size=vision["patch_size"],
                                         pool="cls", **_common(vision, "vision"))
            text_config = TextConfig(context_length=text["max_position_embeddings"], vocab_size=text["vocab_size"],
                                     padding_mask="none", pad_id=eos_id, **pooling, **_common(text, "text"))
            init_scale, init_bias, kind = values.get("logit_scale_init_value", CLIP_LOGIT_SCALE_INIT), None, "clip"
        else:
            if not vision["vision_use_head"]:
                raise UnsupportedArchitectureError("config.json vision_config.vision_use_head=false: the image tower "
                                                   "has no pooled output to compare")
            embed_dim = text.get("projection_size") or text["hidden_size"]
            vision_config = VisionConfig(kind="vit", image_size=vision["image_size"], patch_size=vision["patch_size"],
                                         patch_bias=True, class_token=False, norm_pre=False, pool="probe",
                                         projection="none", **_common(vision, "vision"))
            text_config = TextConfig(context_length=text["max_position_embeddings"], vocab_size=text["vocab_size"],
                                     causal=False, padding_mask="none", pool="last", projection="linear_bias",
                                     pad_id=text["pad_token_id"], **_common(text, "text"))
            init_scale, init_bias, kind = math.log(10.0), -10.0, "siglip"
        return ModelConfig(kind=kind, embed_dim=embed_dim, vision=vision_config, text=text_config,
                           preprocess=preprocess or default_preprocess(model_type, vision_config.image_size),
                           init_logit_scale=init_scale, init_logit_bias=init_bias)
    except (TypeError, ValueError) as error:
        raise UserError(f"config.json: {error}") from error


def hf_model_type(config: ModelConfig) -> str:
    """"clip" or "siglip": which HF model class holds `config`'s architecture, or
    UnsupportedArchitectureError naming the first setting neither can represent."""
    vision, text = config.vision, config.text
    target = "siglip" if getattr(vision, "pool", None) == "probe" else "clip"
    clip_vision = dict(kind="vit", class_token=True, patch_bias=False, norm_pre=True, pool="cls",
                       final_norm="tokens", projection="linear", layer_scale=None)
    siglip_vision = dict(kind="vit", class_token=False, patch_bias=True, norm_pre=False, pool="probe",
                         final_norm="tokens", projection="none", layer_scale=None)
    clip_text = dict(kind="transformer", position="learned", causal=True, padding_mask="none",
                     final_norm="tokens", projection="linear", layer_scale=None, class_token_position=False)
    siglip_text = dict(kind="transformer", position="learned", causal=False, padding_mask="none", pool="last",
                       final_norm="tokens", projection="linear_bias", layer_scale=None, class_token_position=False)
    required = [("vision", vision, clip_vision if target == "clip" else siglip_vision),
                ("text", text, clip_text if target == "clip" else siglip_text)]
    for prefix, tower, settings in required:
        for name, wanted in settings.items():
            if getattr(tower, name, None) != wanted:  # another family's config lacks the attribute
                raise UnsupportedArchitectureError(
                    f"transformers' {'CLIPModel' if target == 'clip' else 'SiglipModel'} cannot represent "
                    f"{prefix}.{name}={getattr(tower, name, None)!r} (it needs {wanted!r})")
    if target == "clip" and (text.pool not in ("argmax", "eos") or text.eos_id == LEGACY_EOS_ID):
        raise UnsupportedArchitectureError(f"transformers' CLIPModel pools text at argmax, or at the first "
                                           f"eos_token_id other than {LEGACY_EOS_ID}; not text.pool={text.pool!r} "
                                           f"with eos_id={text.eos_id!r}")
    if config.kind == "coca":
        raise UnsupportedArchitectureError("transformers has no CoCa model")
    for prefix, tower in (("vision", vision), ("text", text)):
        if tower.activation not in _HF_ACTIVATIONS:
            raise UnsupportedArchitectureError(f"{prefix}.activation={tower.activation!r}")
    return target


def _hf_common(tower) -> dict[str, Any]:
    hidden = tower.mlp_width if tower.mlp_width is not None else int(tower.width * tower.mlp_ratio)
    return {"hidden_size": tower.width, "intermediate_size": hidden, "num_hidden_layers": tower.layers,
            "num_attention_heads": tower.heads, "hidden_act": _HF_ACTIVATIONS[tower.activation],
            "layer_norm_eps": tower.norm_eps}


def config_to_hf(config: ModelConfig, special_ids: dict[str, int]) -> dict:
    """config.json for `transformers.CLIPModel` / `SiglipModel`. special_ids: the tokenizer's
    "bos", "eos" and "pad" ids (the text pooling of CLIP reads eos)."""
    model_type = hf_model_type(config)
    vision, text = config.vision, config.text
    vision_values = {"image_size": vision.image_size, "patch_size": vision.patch_size, "num_channels": 3,
                     **_hf_common(vision)}
    text_values = {"vocab_size": text.vocab_size, "max_position_embeddings": text.context_length,
                   "bos_token_id": special_ids["bos"], "pad_token_id": special_ids["pad"], **_hf_common(text)}
    if model_type == "clip":
        text_values["eos_token_id"] = LEGACY_EOS_ID if text.pool == "argmax" else text.eos_id
        return {"model_type": "clip", "architectures": ["CLIPModel"], "projection_dim": config.embed_dim,
                "logit_scale_init_value": config.init_logit_scale, "text_config": text_values,
                "vision_config": vision_values}
    text_values.update(eos_token_id=special_ids["eos"], projection_size=config.embed_dim)
    vision_values["vision_use_head"] = True
    return {"model_type": "siglip", "architectures": ["SiglipModel"], "text_config": text_values,
            "vision_config": vision_values}
