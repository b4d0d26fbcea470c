"""Reusable blocks (attention, MLP, transformer blocks, pooling heads, patch dropout, conv) the
towers assemble."""

from cliplab.models.layers.activations import ACTIVATIONS, QuickGELU, make_activation
from cliplab.models.layers.attention import (CrossAttention, SelfAttention, apply_rotary,
                                             key_padding_attention_mask, rotary_cos_sin)
from cliplab.models.layers.blocks import (MLP, BlockStack, CrossAttentionBlock, DecoderBlock, LayerScale,
                                          SplitDecoderLayer, TransformerBlock, init_transformer_weights,
                                          mlp_hidden_width)
from cliplab.models.layers.conv import ConvNormAct
from cliplab.models.layers.conv_stem import ConvStem
from cliplab.models.layers.drop_path import DropPath
from cliplab.models.layers.patch_dropout import PatchDropout, keep_random_patches
from cliplab.models.layers.pooling import AttentionalPooler, ProbePooler

__all__ = [
    "ACTIVATIONS", "AttentionalPooler", "BlockStack", "ConvNormAct", "ConvStem", "CrossAttention",
    "CrossAttentionBlock", "DecoderBlock", "DropPath", "LayerScale", "MLP", "PatchDropout", "ProbePooler",
    "QuickGELU", "SelfAttention", "SplitDecoderLayer", "TransformerBlock", "apply_rotary", "init_transformer_weights",
    "keep_random_patches", "key_padding_attention_mask", "make_activation", "mlp_hidden_width",
    "rotary_cos_sin",
]
