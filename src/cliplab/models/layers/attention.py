"""Multi-head self- and cross-attention on `scaled_dot_product_attention`, rotary embeddings, masks.

Shapes: B batch, T query length, S key length, W width, H heads, D = W / H head dim.
Boolean masks follow SDPA's convention: True means "may attend".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def rotary_cos_sin(length: int, head_dim: int, base: float, device: torch.device | None = None,
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables of rotary position embedding for positions 0..length-1: each [length, D].

    Frequencies base**(-2i/D) for i < D/2, each used by the two halves of the head dimension
    (the "rotate half" layout).
    """
    inverse_frequency = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inverse_frequency)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate query or key x: [B, H, T, D] by position; cos, sin: [T, D]. Returns [B, H, T, D]."""
    first_half, second_half = x.chunk(2, dim=-1)
    rotated_half = torch.cat((-second_half, first_half), dim=-1)
    return x * cos + rotated_half * sin


def key_padding_attention_mask(key_is_real: torch.Tensor, causal: bool) -> torch.Tensor:
    """Attention mask hiding padded keys (and future keys when causal): Bool[B, 1, T, T].

    key_is_real: Bool[B, T], True for real tokens. Every query may attend to itself, so a padded
    query never sees an all-masked row (SDPA would return NaN there); real queries never see pads.
    """
    length = key_is_real.shape[1]
    allowed = key_is_real[:, None, None, :].expand(-1, 1, length, -1)
    if causal:
        allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=key_is_real.device).tril()
    itself = torch.eye(length, dtype=torch.bool, device=key_is_real.device)
    return allowed | itself


class SelfAttention(nn.Module):
    """Multi-head self-attention: x [B, T, W] -> [B, T, W].

    qkv/out projections with bias (the layout of CLIP's attention, so parameter counts match);
    qkv_bias=False drops the qkv bias (some of timm's ViTs).
    """

    def __init__(self, width: int, heads: int, *, qkv_bias: bool = True):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=qkv_bias)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, causal: bool = False,
                rotary: tuple[torch.Tensor, torch.Tensor] | None = None, queries: int | None = None
                ) -> torch.Tensor:
        """attn_mask: Bool broadcastable to [B, H, T, T] or None; causal: apply a causal mask when
        attn_mask is None; rotary: (cos, sin) [T, D] applied to queries and keys. queries: only the
        first `queries` positions ask (every position is a key): [B, queries, W] out; no mask,
        causality or rotary with it."""
        if queries is not None:
            return self._first_queries(x, queries, attn_mask, causal, rotary)
        batch, length, width = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.heads, width // self.heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, T, D]
        if rotary is not None:
            cos, sin = (table.to(query.dtype) for table in rotary)
            query, key = apply_rotary(query, cos, sin), apply_rotary(key, cos, sin)
        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=attn_mask, is_causal=causal and attn_mask is None)
        return self.out(attended.transpose(1, 2).reshape(batch, length, width))

    def _first_queries(self, x: torch.Tensor, queries: int, attn_mask, causal: bool, rotary) -> torch.Tensor:
        """The output rows of the first `queries` positions alone, from the rows of the packed qkv
        projection that each needs: queries from those positions, keys and values from all."""
        if attn_mask is not None or causal or rotary is not None:
            raise ValueError("queries= takes no attn_mask, causal mask or rotary embedding")
        batch, length, width = x.shape
        head_dim = width // self.heads
        # Through the module, not its weight's rows: a wrapped projection (peft's LoRA layer) adds its
        # adapters here as in the full forward.
        packed = self.qkv(x)
        query, key_value = packed[:, :queries, :width], packed[..., width:]
        query = query.reshape(batch, queries, self.heads, head_dim).transpose(1, 2)
        key, value = key_value.view(batch, length, 2, self.heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        attended = F.scaled_dot_product_attention(query, key, value)
        return self.out(attended.transpose(1, 2).reshape(batch, queries, width))


class CrossAttention(nn.Module):
    """Multi-head attention from queries x [B, T, W] to a context [B, S, Wc] -> [B, T, W]."""

    def __init__(self, width: int, context_width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.query = nn.Linear(width, width)
        self.key_value = nn.Linear(context_width, 2 * width)
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, context: torch.Tensor,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """attn_mask: Bool broadcastable to [B, H, T, S] (True: may attend) or None."""
        batch, length, width = x.shape
        head_dim = width // self.heads
        query = self.query(x).view(batch, length, self.heads, head_dim).transpose(1, 2)
        key_value = self.key_value(context).view(batch, context.shape[1], 2, self.heads, head_dim)
        key, value = key_value.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, S, D]
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask)
        return self.out(attended.transpose(1, 2).reshape(batch, length, width))
