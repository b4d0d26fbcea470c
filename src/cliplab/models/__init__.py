"""Models: blocks in `layers`, towers in `towers`, CLIP/SigLIP/CoCa assemblies, configs, registry."""

from cliplab.models.clip import CLIP
from cliplab.models.coca import CoCa
from cliplab.models.config import (DecoderConfig, ModelConfig, TextConfig, VisionConfig,
                                   apply_overrides)
from cliplab.models.registry import (build_model, create_model, get_model_config, list_models,
                                     register_model)

__all__ = [
    "CLIP", "CoCa", "DecoderConfig", "ModelConfig", "TextConfig", "VisionConfig", "apply_overrides",
    "build_model", "create_model", "get_model_config", "list_models", "register_model",
]
