"""Blocks: attention against a hand-written reference, rotary, masks, patch dropout, checkpointing."""

import math

import pytest
import torch

from cliplab.models.layers import (BlockStack, PatchDropout, SelfAttention, TransformerBlock,
                                   apply_rotary, key_padding_attention_mask, rotary_cos_sin)


def reference_attention(attention: SelfAttention, x, allowed):
    batch, length, width = x.shape
    head_dim = width // attention.heads
    query, key, value = attention.qkv(x).split(width, dim=-1)
    split = lambda t: t.view(batch, length, attention.heads, head_dim).transpose(1, 2)
    scores = split(query) @ split(key).transpose(-1, -2) / math.sqrt(head_dim)
    scores = scores.masked_fill(~allowed, float("-inf"))
    mixed = scores.softmax(-1) @ split(value)
    return attention.out(mixed.transpose(1, 2).reshape(batch, length, width))


def test_self_attention_matches_reference_with_padding_and_causal_mask():
    torch.manual_seed(0)
    attention = SelfAttention(width=8, heads=2)
    x = torch.randn(2, 5, 8)
    is_real = torch.tensor([[True] * 5, [True, True, True, False, False]])
    mask = key_padding_attention_mask(is_real, causal=True)
    expected = reference_attention(attention, x, mask)
    torch.testing.assert_close(attention(x, attn_mask=mask), expected)
    causal_only = torch.ones(5, 5, dtype=torch.bool).tril()
    torch.testing.assert_close(attention(x, causal=True), reference_attention(attention, x, causal_only))


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_first_queries_are_the_first_rows_of_the_whole_attention_and_block(qkv_bias):
    torch.manual_seed(0)
    attention = SelfAttention(width=8, heads=2, qkv_bias=qkv_bias)
    x = torch.randn(2, 5, 8)
    every_key = torch.ones(5, 5, dtype=torch.bool)
    # The same sums over fewer rows: equal up to float reassociation.
    torch.testing.assert_close(attention(x, queries=2), reference_attention(attention, x, every_key)[:, :2],
                               rtol=0, atol=1e-6)
    block = TransformerBlock(8, 2, layer_scale=0.5)
    torch.testing.assert_close(block(x, queries=1), block(x)[:, :1], rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="queries= takes no attn_mask"):
        attention(x, causal=True, queries=1)


def test_padding_mask_hides_pads_and_never_leaves_an_empty_row():
    is_real = torch.tensor([[True, True, False, False]])
    mask = key_padding_attention_mask(is_real, causal=False)[0, 0]
    assert mask.tolist() == [[True, True, False, False], [True, True, False, False],
                             [True, True, True, False], [True, True, False, True]]
    causal = key_padding_attention_mask(is_real, causal=True)[0, 0]
    assert causal.tolist() == [[True, False, False, False], [True, True, False, False],
                               [True, True, True, False], [True, True, False, True]]
    attention = SelfAttention(width=4, heads=1)
    all_pad = key_padding_attention_mask(torch.zeros(1, 3, dtype=torch.bool), causal=False)
    assert torch.isfinite(attention(torch.randn(1, 3, 4), attn_mask=all_pad)).all()


def test_rotary_scores_depend_only_on_relative_position():
    torch.manual_seed(0)
    cos, sin = rotary_cos_sin(12, head_dim=8, base=10000.0)
    query, key = torch.randn(8), torch.randn(8)
    rotated_query = apply_rotary(query.expand(1, 1, 12, 8), cos, sin)[0, 0]
    rotated_key = apply_rotary(key.expand(1, 1, 12, 8), cos, sin)[0, 0]
    score = lambda i, j: float(rotated_query[i] @ rotated_key[j])
    assert score(5, 3) == pytest.approx(score(9, 7), abs=1e-5)
    assert score(0, 0) == pytest.approx(float(query @ key), abs=1e-5)
    assert torch.allclose(rotated_query.norm(dim=-1), query.norm().expand(12))


def test_patch_dropout_only_in_training_keeps_at_least_one_and_differs_per_sample():
    patches = torch.arange(2 * 10, dtype=torch.float32).view(2, 10, 1).repeat(1, 1, 3)
    dropout = PatchDropout(0.5).eval()
    assert dropout(patches) is patches
    dropout.train()
    torch.manual_seed(0)
    kept = dropout(patches)
    assert kept.shape == (2, 5, 3)
    for sample in range(2):
        values = kept[sample, :, 0]
        assert set(values.tolist()) <= set(patches[sample, :, 0].tolist())
        assert torch.all(values[1:] > values[:-1]), "kept patches stay in their original order"
    assert PatchDropout(0.99).train()(patches).shape == (2, 1, 3)
    with pytest.raises(ValueError, match="probability"):
        PatchDropout(1.0)


def test_patch_dropout_subsets_are_drawn_per_sample():
    torch.manual_seed(1)
    patches = torch.arange(16, dtype=torch.float32).view(1, 16, 1).repeat(64, 1, 1)
    kept = PatchDropout(0.5).train()(patches)[..., 0]
    assert len({tuple(row.tolist()) for row in kept}) > 1


def test_gradient_checkpointing_gives_the_same_gradients_with_dropout():
    torch.manual_seed(0)
    stack = BlockStack([TransformerBlock(8, 2, 2.0, dropout=0.3) for _ in range(2)])
    x = torch.randn(3, 4, 8)
    gradients = []
    for checkpointing in (False, True):
        stack.grad_checkpointing = checkpointing
        stack.zero_grad()
        torch.manual_seed(5)
        stack(x, causal=True).square().sum().backward()
        gradients.append([parameter.grad.clone() for parameter in stack.parameters()])
    for plain, checkpointed in zip(*gradients):
        torch.testing.assert_close(plain, checkpointed)
