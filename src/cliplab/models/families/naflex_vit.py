"""Tower family "naflex_vit": SigLIP2's NaFlex vision transformer (Hugging Face `Siglip2Model`,
model_type "siglip2"), which reads images at their own aspect ratio as padded sequences of patches
(`towers.naflex_vision_transformer`; the input format is `cliplab.data.naflex`).

It differs from the "vit" family's SigLIP layout in three places: the patch embedding is a Linear
over flattened patches (not a strided conv), the learned positions are a square grid resized to
every image's grid of patches, and padding patches are masked in attention and in the probe head.
Given a plain image tensor [B, 3, S, S] it is a fixed-resolution tower like the others, which is how
it trains (`image_size` is that resolution; `max_num_patches` the NaFlex preprocessing's budget).

    cliplab                                    Hugging Face (Siglip2Model)
    vision_tower.patch_embedding (Linear)      vision_model.embeddings.patch_embedding
    vision_tower.position_embedding [G*G, W]   vision_model.embeddings.position_embedding.weight
    vision_tower.transformer.blocks.N          vision_model.encoder.layers.N
    vision_tower.norm_post                     vision_model.post_layernorm
    vision_tower.pooler (probe head)           vision_model.head (probe, attention, layernorm, mlp)

open_clip 3.3.0 has no NaFlex tower (its SigLIP2 configs are fixed-resolution timm towers).
"""

from __future__ import annotations

from dataclasses import dataclass

from cliplab.errors import UnsupportedArchitectureError
from cliplab.models.families.layouts import encoder_rules, probe_head_rules
from cliplab.models.families.spec import TowerFamily, each_transformer_block
from cliplab.models.key_rules import PARAMETER, KeyRule, rule
from cliplab.models.tower_configs import (PROJECTIONS, check_block_options, check_choice, check_heads,
                                          check_positive_int)
from cliplab.models.towers.naflex_vision_transformer import NaFlexVisionTransformer

KIND = "naflex_vit"
HF_MODEL_TYPE = "siglip2"


@dataclass(kw_only=True)
class NaFlexVisionConfig:
    """NaFlex image tower (module docstring).

    image_size: side S of square images given as a tensor [B, 3, S, S] (fixed-resolution training and
    evaluation; a multiple of patch_size). width, layers, heads, patch_size (P): as the ViT's.
    position_grid: side G of the learned position table (G * G entries; Hugging Face's `num_patches`
    is G * G). max_num_patches: patches per image of the NaFlex preprocessing (its sequence length N).
    mlp_ratio / mlp_width, activation, norm_eps, layer_scale, dropout: see the blocks.
    projection: into the shared latent ("none" in SigLIP2: the probe head's output is the embedding).
    """

    kind: str = KIND
    image_size: int
    width: int
    layers: int
    heads: int = 12
    patch_size: int = 16
    position_grid: int = 16
    max_num_patches: int = 256
    mlp_ratio: float = 4.0
    mlp_width: int | None = None
    activation: str = "gelu_tanh"
    norm_eps: float = 1e-6
    layer_scale: float | None = None
    projection: str = "none"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_choice("vision.kind", self.kind, (KIND,))
        for name in ("image_size", "width", "layers", "patch_size", "position_grid", "max_num_patches"):
            check_positive_int(f"vision.{name}", getattr(self, name))
        check_heads("vision", self.width, self.heads)
        check_block_options("vision", self)
        check_choice("vision.projection", self.projection, PROJECTIONS)
        if self.image_size % self.patch_size:
            raise ValueError(f"vision.image_size ({self.image_size}) must be divisible by "
                             f"vision.patch_size ({self.patch_size})")

    @property
    def output_width(self) -> int:
        """Width of the pooled vector (what the image projection reads)."""
        return self.width


def hf_rules(vision: NaFlexVisionConfig, model_type: str) -> list[KeyRule]:
    """Siglip2Model's vision half with its probe head."""
    if model_type != HF_MODEL_TYPE:
        raise UnsupportedArchitectureError(f"transformers holds a NaFlex image tower in Siglip2Model only, "
                                           f"not in model_type {model_type!r}")
    embeddings = "vision_model.embeddings."
    return [
        rule(r"vision_tower\.patch_embedding\." + PARAMETER, embeddings + "patch_embedding.{param}"),
        rule(r"vision_tower\.position_embedding", embeddings + "position_embedding.weight"),
        *encoder_rules(r"vision_tower\.transformer\.blocks", "vision_model.encoder.layers"),
        rule(r"vision_tower\.norm_post\." + PARAMETER, "vision_model.post_layernorm.{param}"),
        *probe_head_rules(r"vision_tower\.pooler", "vision_model.head"),
    ]


FAMILY = TowerFamily(
    kind=KIND, side="vision", config=NaFlexVisionConfig, build=NaFlexVisionTransformer,
    summary="SigLIP2's NaFlex ViT (HF Siglip2Model): patches at each image's aspect ratio, resized position grid",
    lock_groups=NaFlexVisionTransformer.parameter_groups, fsdp_units=each_transformer_block, hf_rules=hf_rules,
)
