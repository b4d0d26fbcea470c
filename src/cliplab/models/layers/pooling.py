"""Attention pooling heads: learned queries attend to a tower's tokens.

- `AttentionalPooler` (open_clip's, used by CoCa): Q learned queries [Q, W] read tokens [B, S, Wc]
  of another width; queries and tokens are layer-normalised first. -> [B, Q, W].
- `ProbePooler` (SigLIP's multihead attention pooling head, "MAP"): one learned probe reads the
  tokens, then a residual MLP on the normalised result. -> [B, W].
"""

from __future__ import annotations

import torch
from torch import nn

from cliplab.models.layers.attention import CrossAttention
from cliplab.models.layers.blocks import MLP


class AttentionalPooler(nn.Module):
    """tokens [B, S, context_width] -> [B, queries, width]."""

    def __init__(self, width: int, context_width: int, heads: int, queries: int, norm_eps: float = 1e-5):
        super().__init__()
        self.query = nn.Parameter(torch.empty(queries, width))
        nn.init.normal_(self.query, std=width ** -0.5)
        self.norm_query = nn.LayerNorm(width, eps=norm_eps)
        self.norm_context = nn.LayerNorm(context_width, eps=norm_eps)
        self.attn = CrossAttention(width, context_width, heads)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        queries = self.norm_query(self.query).expand(tokens.shape[0], -1, -1)
        return self.attn(queries, self.norm_context(tokens))


class ProbePooler(nn.Module):
    """tokens [B, S, W] -> pooled [B, W]: probe attention, then x + mlp(norm(x))."""

    def __init__(self, width: int, heads: int, mlp_width: int, activation: str, norm_eps: float):
        super().__init__()
        self.probe = nn.Parameter(torch.empty(width))
        nn.init.normal_(self.probe, std=width ** -0.5)
        self.attn = CrossAttention(width, width, heads)
        self.norm = nn.LayerNorm(width, eps=norm_eps)
        self.mlp = MLP(width, mlp_width, activation)

    def forward(self, tokens: torch.Tensor, token_is_real: torch.Tensor | None = None) -> torch.Tensor:
        """token_is_real: Bool[B, S], False for padding the probe must not read (None: all real)."""
        probe = self.probe.to(tokens.dtype).expand(tokens.shape[0], 1, -1)
        mask = None if token_is_real is None else token_is_real[:, None, None, :]
        pooled = self.attn(probe, tokens, attn_mask=mask)
        return (pooled + self.mlp(self.norm(pooled)))[:, 0]
