"""cliplab <-> Hugging Face transformers `CLIPModel` / `SiglipModel` tensor names.

    cliplab                                     Hugging Face
    vision_tower.patch_embedding                vision_model.embeddings.patch_embedding
    vision_tower.class_embedding                vision_model.embeddings.class_embedding (CLIP)
    vision_tower.position_embedding             vision_model.embeddings.position_embedding.weight
    vision_tower.norm_pre                       vision_model.pre_layrnorm (CLIP; sic)
    *.transformer.blocks.N.norm_attn / norm_mlp *.encoder.layers.N.layer_norm1 / layer_norm2
    *.attn.qkv                                  *.self_attn.{q,k,v}_proj (concatenated)
    *.attn.out, *.mlp.fc, *.mlp.proj            *.self_attn.out_proj, *.mlp.fc1, *.mlp.fc2
    vision_tower.norm_post                      vision_model.post_layernorm
    vision_tower.pooler (probe head)            vision_model.head (probe (1, 1, D), attention
                                                in_proj, layernorm, mlp) (SigLIP)
    image_projection.weight                     visual_projection.weight (CLIP)
    text_tower.token_embedding / position_emb.  text_model.embeddings.token_embedding / position_embedding
    text_tower.norm_final                       text_model.final_layer_norm
    text_projection                             text_projection (CLIP) / text_model.head (SigLIP)
    logit_scale, logit_bias                     logit_scale (CLIP: 0-d; SigLIP: (1,)), logit_bias (1,)

Older transformers saved the non-persistent `position_ids` buffers; `without_position_ids` drops them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from cliplab.models.config import ModelConfig
from cliplab.pretrained.key_maps import KeyRule, rule
from cliplab.pretrained.open_clip_keys import PARAMETER, multihead_rules


def encoder_rules(ours: str, theirs: str) -> list[KeyRule]:
    """Transformer blocks at cliplab prefix `ours` (a regex with the block index as group 0) <->
    an HF encoder at `theirs` ("...encoder.layers")."""
    layer = theirs + ".{0}"
    return [
        rule(ours + r"\.(\d+)\.norm_attn\." + PARAMETER, layer + ".layer_norm1.{param}"),
        rule(ours + r"\.(\d+)\.attn\.qkv\." + PARAMETER, layer + ".self_attn.q_proj.{param}",
             layer + ".self_attn.k_proj.{param}", layer + ".self_attn.v_proj.{param}"),
        rule(ours + r"\.(\d+)\.attn\.out\." + PARAMETER, layer + ".self_attn.out_proj.{param}"),
        rule(ours + r"\.(\d+)\.norm_mlp\." + PARAMETER, layer + ".layer_norm2.{param}"),
        rule(ours + r"\.(\d+)\.mlp\.fc\." + PARAMETER, layer + ".mlp.fc1.{param}"),
        rule(ours + r"\.(\d+)\.mlp\.proj\." + PARAMETER, layer + ".mlp.fc2.{param}"),
    ]


def _embedding_rules() -> list[KeyRule]:
    return [
        rule(r"vision_tower\.patch_embedding\." + PARAMETER, "vision_model.embeddings.patch_embedding.{param}"),
        rule(r"vision_tower\.class_embedding", "vision_model.embeddings.class_embedding"),
        rule(r"vision_tower\.position_embedding", "vision_model.embeddings.position_embedding.weight"),
        rule(r"vision_tower\.norm_pre\." + PARAMETER, "vision_model.pre_layrnorm.{param}"),
        *encoder_rules(r"vision_tower\.transformer\.blocks", "vision_model.encoder.layers"),
        rule(r"vision_tower\.norm_post\." + PARAMETER, "vision_model.post_layernorm.{param}"),
        rule(r"text_tower\.token_embedding\.weight", "text_model.embeddings.token_embedding.weight"),
        rule(r"text_tower\.position_embedding", "text_model.embeddings.position_embedding.weight"),
        *encoder_rules(r"text_tower\.transformer\.blocks", "text_model.encoder.layers"),
        rule(r"text_tower\.norm_final\." + PARAMETER, "text_model.final_layer_norm.{param}"),
    ]


def hf_clip_rules(config: ModelConfig) -> list[KeyRule]:
    """The rules for a `transformers.CLIPModel`."""
    return [*_embedding_rules(),
            rule(r"image_projection\.weight", "visual_projection.weight"),
            rule(r"text_projection\.weight", "text_projection.weight"),
            rule(r"logit_scale", "logit_scale")]


def hf_siglip_rules(config: ModelConfig) -> list[KeyRule]:
    """The rules for a `transformers.SiglipModel` (vision head: the attention probe)."""
    head = "vision_model.head"
    return [*_embedding_rules(),
            rule(r"vision_tower\.pooler\.probe", head + ".probe", transform="squeeze2"),
            *multihead_rules(r"vision_tower\.pooler\.attn", head + ".attention", same_width=True),
            rule(r"vision_tower\.pooler\.norm\." + PARAMETER, head + ".layernorm.{param}"),
            rule(r"vision_tower\.pooler\.mlp\.fc\." + PARAMETER, head + ".mlp.fc1.{param}"),
            rule(r"vision_tower\.pooler\.mlp\.proj\." + PARAMETER, head + ".mlp.fc2.{param}"),
            rule(r"text_projection\." + PARAMETER, "text_model.head.{param}"),
            rule(r"logit_scale", "logit_scale", transform="squeeze1"),
            rule(r"logit_bias", "logit_bias", transform="squeeze1")]


def without_position_ids(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` without the `*.position_ids` index buffers older transformers versions saved."""
    return {name: tensor for name, tensor in state.items() if not name.endswith("position_ids")}
