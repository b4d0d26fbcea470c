"""cliplab <-> Hugging Face transformers `CLIPModel` / `SiglipModel` / `Siglip2Model` tensor names.

Each tower's names are its family's (`TowerFamily.hf_rules`, see `cliplab.models.families.vit` and
`text_transformer` for the tables); what is left here is the model level:

    cliplab                                     Hugging Face
    logit_scale, logit_bias                     logit_scale (CLIP: 0-d; SigLIP, SigLIP2: (1,)), logit_bias (1,)

Older transformers saved the non-persistent `position_ids` buffers; `without_position_ids` drops them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from cliplab.errors import UnsupportedArchitectureError
from cliplab.models.config import ModelConfig
from cliplab.models.families import family_of
from cliplab.models.key_rules import KeyRule, rule


def _tower_rules(config: ModelConfig, model_type: str) -> list[KeyRule]:
    rules = []
    for side in ("vision", "text"):
        tower = getattr(config, side)
        family = family_of(tower)
        if family.hf_rules is None:
            raise UnsupportedArchitectureError(f"transformers has no {side} tower of kind {tower.kind!r}")
        rules += family.hf_rules(tower, model_type)
    return rules


def hf_clip_rules(config: ModelConfig) -> list[KeyRule]:
    """The rules for a `transformers.CLIPModel`."""
    return [*_tower_rules(config, "clip"), rule(r"logit_scale", "logit_scale")]


def hf_siglip_rules(config: ModelConfig, model_type: str = "siglip") -> list[KeyRule]:
    """The rules for a `transformers.SiglipModel` (vision head: the attention probe), or with
    model_type "siglip2" a `Siglip2Model`."""
    return [*_tower_rules(config, model_type),
            rule(r"logit_scale", "logit_scale", transform="squeeze1"),
            rule(r"logit_bias", "logit_bias", transform="squeeze1")]


def hf_model_rules(config: ModelConfig, model_type: str) -> list[KeyRule]:
    """The rules for the transformers model class of `model_type` ("clip", "siglip", "siglip2")."""
    return hf_clip_rules(config) if model_type == "clip" else hf_siglip_rules(config, model_type)


def without_position_ids(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` without the `*.position_ids` index buffers older transformers versions saved."""
    return {name: tensor for name, tensor in state.items() if not name.endswith("position_ids")}
