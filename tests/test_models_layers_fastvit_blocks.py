"""FastViT's blocks: RepMixer and the conditional positional encoding fold into one depthwise
conv with the same eval-mode features (random BatchNorm statistics, random layer scale), and the
attention block attends over the H*W positions of a feature map."""

import pytest
import torch
from torch import nn

from cliplab.models.layers.fastvit_blocks import (AttentionBlock, ConditionalPositionEncoding, RepMixer,
                                                  RepMixerBlock)
from reference_libraries import randomize_ as randomized
from test_models_layers_mobileone import TOLERANCE, images


@pytest.mark.parametrize("layer_scale", [1e-5, None])
def test_repmixer_folds_into_one_depthwise_conv(layer_scale):
    mixer = randomized(RepMixer(8, 3, layer_scale=layer_scale), seed=0)
    x = images(8)
    with torch.no_grad():
        expected = mixer(x)
        mixer.reparameterize()
        torch.testing.assert_close(mixer(x), expected, **TOLERANCE)
    assert sorted(mixer.state_dict()) == ["reparam_conv.bias", "reparam_conv.weight"]
    assert mixer.reparam_conv.groups == 8


def test_the_positional_encoding_folds_its_skip_connection():
    encoding = randomized(ConditionalPositionEncoding(4), seed=2)
    x = images(4)
    with torch.no_grad():
        expected = encoding(x)
        encoding.reparameterize()
        torch.testing.assert_close(encoding(x), expected, **TOLERANCE)


def test_a_folded_block_is_built_folded_with_the_same_names():
    block = RepMixerBlock(8, kernel_size=3, mlp_ratio=3.0, layer_scale=1e-5)
    block.token_mixer.reparameterize()
    folded = RepMixerBlock(8, kernel_size=3, mlp_ratio=3.0, layer_scale=1e-5, reparameterized=True)
    assert {name: tensor.shape for name, tensor in block.state_dict().items()} == {
        name: tensor.shape for name, tensor in folded.state_dict().items()}


def test_the_attention_block_attends_over_positions_with_heads_of_32():
    block = randomized(AttentionBlock(64, mlp_ratio=2.0, layer_scale=0.5, norm="layer"), seed=3)
    x = images(64, side=3)
    tokens = block.norm(x).flatten(2).transpose(1, 2)  # [B, 9, 64]
    attention = nn.MultiheadAttention(64, 2, bias=False, batch_first=True)
    with torch.no_grad():
        attention.in_proj_weight.copy_(block.token_mixer.qkv.weight)
        attention.out_proj.weight.copy_(block.token_mixer.out.weight)
        attention.out_proj.bias = nn.Parameter(block.token_mixer.out.bias.clone())
        attended = attention(tokens, tokens, tokens, need_weights=False)[0].transpose(1, 2).reshape(x.shape)
        after_attention = x + block.layer_scale_1.gamma * attended
        expected = after_attention + block.layer_scale_2.gamma * block.mlp(after_attention)
        torch.testing.assert_close(block(x), expected, **TOLERANCE)
    assert block.token_mixer.heads == 2 and block.token_mixer.qkv.bias is None
