"""Reusable blocks (attention, MLP, transformer blocks, patch dropout, conv) the towers assemble."""

from cliplab.models.layers.attention import (CrossAttention, SelfAttention, apply_rotary,
                                             key_padding_attention_mask, rotary_cos_sin)
from cliplab.models.layers.blocks import (MLP, BlockStack, DecoderBlock, TransformerBlock,
                                          init_transformer_weights)
from cliplab.models.layers.conv import ConvNormAct
from cliplab.models.layers.patch_dropout import PatchDropout, keep_random_patches

__all__ = [
    "BlockStack", "ConvNormAct", "CrossAttention", "DecoderBlock", "MLP", "PatchDropout",
    "SelfAttention", "TransformerBlock", "apply_rotary", "init_transformer_weights",
    "keep_random_patches", "key_padding_attention_mask", "rotary_cos_sin",
]
