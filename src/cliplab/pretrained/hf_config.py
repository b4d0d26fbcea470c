"""Hugging Face `config.json` (model_type "clip", "siglip" or "siglip2") <-> `ModelConfig`, and
preprocessor_config.json <-> `PreprocessConfig`.

Missing keys take transformers' own defaults (CLIPTextConfig, CLIPVisionConfig, SiglipTextConfig,
SiglipVisionConfig, Siglip2TextConfig, Siglip2VisionConfig, Siglip2ImageProcessor; the numbers are
below), so transformers need not be installed to load.

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
    SigLIP2 vision (NaFlex)             tower family "naflex_vit": num_patches = position_grid ** 2; the
                                        processor's max_num_patches and patch_size; image_size (the
                                        fixed resolution of square tensors) = patch_size * the whole
                                        square root of max_num_patches; preprocessing bilinear,
                                        mean = std = 0.5 (Siglip2ImageProcessor's defaults)
    SigLIP2 text                        as SigLIP's
    projection_dim / projection_size    embed_dim
"""

from __future__ import annotations

import math
from typing import Any

from cliplab.data.preprocess_config import PIL_RESAMPLE_CODES
from cliplab.data.transforms import PreprocessConfig
from cliplab.errors import UserError
from cliplab.models.config import ModelConfig
from cliplab.models.families.naflex_vit import NaFlexVisionConfig
from cliplab.models.open_clip_config import UnsupportedArchitectureError
from cliplab.models.tower_configs import TextConfig, VisionConfig

MODEL_TYPES = ("clip", "siglip", "siglip2")
HF_PROCESSOR_CONFIG = "preprocessor_config.json"
HF_ARCHITECTURES = {"clip": "CLIPModel", "siglip": "SiglipModel", "siglip2": "Siglip2Model"}
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
    ("siglip2", "vision"): {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                            "num_attention_heads": 12, "num_channels": 3, "patch_size": 16, "num_patches": 256,
                            "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "vision_use_head": True},
}
DEFAULTS[("siglip2", "text")] = DEFAULTS[("siglip", "text")]
# Siglip2ImageProcessor's defaults (its resample is bilinear, SigLIP's and CLIP's bicubic).
NAFLEX_PROCESSOR_DEFAULTS = {"resample": PIL_RESAMPLE_CODES["bilinear"], "image_mean": [0.5] * 3,
                             "image_std": [0.5] * 3, "patch_size": 16, "max_num_patches": 256}
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


def _processor_preprocess(processor: dict | None, model_type: str, image_size: int) -> PreprocessConfig:
    if processor is None:
        return default_preprocess(model_type, image_size)
    try:
        return PreprocessConfig.from_hf_image_processor(processor)
    except UserError as error:
        raise UserError(f"preprocessor_config.json: {error}") from None


def naflex_preprocess(processor: dict | None, patch_size: int) -> tuple[PreprocessConfig, int]:
    """A Siglip2ImageProcessor's preprocessor_config.json values (None: its defaults, at the model's
    patch_size) -> (the fixed-resolution PreprocessConfig, max_num_patches); see the module docstring."""
    values = {**NAFLEX_PROCESSOR_DEFAULTS, **(processor if processor is not None else {"patch_size": patch_size})}
    if values["patch_size"] != patch_size:
        raise UnsupportedArchitectureError(f"preprocessor_config.json patch_size={values['patch_size']!r}: the "
                                           f"model's patches are {patch_size} pixels wide")
    patches = values["max_num_patches"]
    if not isinstance(patches, int) or isinstance(patches, bool) or patches < 1:
        raise UserError(f"preprocessor_config.json max_num_patches must be a positive int, got {patches!r}")
    side = patch_size * math.isqrt(patches)
    try:
        preprocess = PreprocessConfig.from_hf_image_processor({**values, "size": {"height": side, "width": side}})
    except UserError as error:
        raise UserError(f"preprocessor_config.json: {error}") from None
    return preprocess, patches


def naflex_processor_values(config: ModelConfig) -> dict:
    """preprocessor_config.json for `transformers.Siglip2ImageProcessor` of a NaFlex model."""
    preprocess = config.preprocess
    return {"image_processor_type": "Siglip2ImageProcessor", "do_resize": True,
            "resample": PIL_RESAMPLE_CODES[preprocess.interpolation], "do_rescale": True, "rescale_factor": 1 / 255,
            "do_normalize": True, "image_mean": list(preprocess.mean), "image_std": list(preprocess.std),
            "do_convert_rgb": True, "patch_size": config.vision.patch_size,
            "max_num_patches": config.vision.max_num_patches}


def _naflex_vision(vision: dict, processor: dict | None) -> tuple[NaFlexVisionConfig, PreprocessConfig]:
    grid = math.isqrt(vision["num_patches"])
    if grid * grid != vision["num_patches"]:
        raise UnsupportedArchitectureError(f"config.json vision_config.num_patches={vision['num_patches']}: the "
                                           "position table must be a square grid")
    preprocess, max_num_patches = naflex_preprocess(processor, vision["patch_size"])
    config = NaFlexVisionConfig(image_size=preprocess.image_size, patch_size=vision["patch_size"], position_grid=grid,
                                max_num_patches=max_num_patches, projection="none", **_common(vision, "vision"))
    return config, preprocess


def config_from_hf(values: dict, processor: dict | None = None) -> ModelConfig:
    """The ModelConfig of a parsed HF config.json. processor: the directory's parsed
    preprocessor_config.json when it has one (None: the model type's default processor)."""
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
            preprocess = _processor_preprocess(processor, model_type, vision_config.image_size)
        else:
            if not vision["vision_use_head"]:
                raise UnsupportedArchitectureError("config.json vision_config.vision_use_head=false: the image tower "
                                                   "has no pooled output to compare")
            embed_dim = text.get("projection_size") or text["hidden_size"]
            if model_type == "siglip2":
                vision_config, preprocess = _naflex_vision(vision, processor)
            else:
                vision_config = VisionConfig(kind="vit", image_size=vision["image_size"],
                                             patch_size=vision["patch_size"], patch_bias=True, class_token=False,
                                             norm_pre=False, pool="probe", projection="none",
                                             **_common(vision, "vision"))
                preprocess = _processor_preprocess(processor, model_type, vision_config.image_size)
            text_config = TextConfig(context_length=text["max_position_embeddings"], vocab_size=text["vocab_size"],
                                     causal=False, padding_mask="none", pool="last", projection="linear_bias",
                                     pad_id=text["pad_token_id"], **_common(text, "text"))
            init_scale, init_bias, kind = math.log(10.0), -10.0, "siglip"
        return ModelConfig(kind=kind, embed_dim=embed_dim, vision=vision_config, text=text_config,
                           preprocess=preprocess, init_logit_scale=init_scale, init_logit_bias=init_bias)
    except (TypeError, ValueError) as error:
        raise UserError(f"config.json: {error}") from error


def hf_model_type(config: ModelConfig) -> str:
    """"clip", "siglip" or "siglip2": which HF model class holds `config`'s architecture, or
    UnsupportedArchitectureError naming the first setting it cannot represent."""
    vision, text = config.vision, config.text
    if getattr(vision, "kind", None) == "naflex_vit":
        target = "siglip2"
    else:
        target = "siglip" if getattr(vision, "pool", None) == "probe" else "clip"
    required_vision = {
        "clip": dict(kind="vit", class_token=True, patch_bias=False, norm_pre=True, pool="cls",
                     final_norm="tokens", projection="linear", layer_scale=None),
        "siglip": dict(kind="vit", class_token=False, patch_bias=True, norm_pre=False, pool="probe",
                       final_norm="tokens", projection="none", layer_scale=None),
        "siglip2": dict(kind="naflex_vit", projection="none", layer_scale=None),
    }[target]
    clip_text = dict(kind="transformer", position="learned", causal=True, padding_mask="none",
                     final_norm="tokens", projection="linear", layer_scale=None, class_token_position=False)
    siglip_text = dict(kind="transformer", position="learned", causal=False, padding_mask="none", pool="last",
                       final_norm="tokens", projection="linear_bias", layer_scale=None, class_token_position=False)
    required = [("vision", vision, required_vision), ("text", text, clip_text if target == "clip" else siglip_text)]
    for prefix, tower, settings in required:
        for name, wanted in settings.items():
            if getattr(tower, name, None) != wanted:  # another family's config lacks the attribute
                raise UnsupportedArchitectureError(
                    f"transformers' {HF_ARCHITECTURES[target]} cannot represent "
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


def config_to_hf(config: ModelConfig, special_ids: dict[str, int | None]) -> dict:
    """config.json for `transformers.CLIPModel` / `SiglipModel` / `Siglip2Model`. special_ids: the
    tokenizer's "bos" (None where it has none), "eos" and "pad" ids (the text pooling of CLIP reads eos)."""
    model_type = hf_model_type(config)
    vision, text = config.vision, config.text
    vision_values = {"patch_size": vision.patch_size, "num_channels": 3, **_hf_common(vision)}
    text_values = {"vocab_size": text.vocab_size, "max_position_embeddings": text.context_length,
                   "bos_token_id": special_ids["bos"], "pad_token_id": special_ids["pad"], **_hf_common(text)}
    if model_type == "clip":
        text_values["eos_token_id"] = LEGACY_EOS_ID if text.pool == "argmax" else text.eos_id
        return {"model_type": "clip", "architectures": ["CLIPModel"], "projection_dim": config.embed_dim,
                "logit_scale_init_value": config.init_logit_scale, "text_config": text_values,
                "vision_config": {"image_size": vision.image_size, **vision_values}}
    text_values.update(eos_token_id=special_ids["eos"], projection_size=config.embed_dim)
    vision_values["vision_use_head"] = True
    if model_type == "siglip2":
        vision_values["num_patches"] = vision.position_grid ** 2
    else:
        vision_values["image_size"] = vision.image_size
    return {"model_type": model_type, "architectures": [HF_ARCHITECTURES[model_type]], "text_config": text_values,
            "vision_config": vision_values}
