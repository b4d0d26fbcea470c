"""The transformer block of timm's Eva (EVA01, EVA02, Perception Encoder) and its attention.

x: [B, T, W] float; the first `skip` tokens (the class token) carry no grid position, the rest are
patch tokens in row-major order. Options beyond cliplab's `TransformerBlock`:

- qkv bias: "qkv" (one bias on the packed projection), "qv" (EVA's: query and value biases, the key
  has none) or "none".
- 2-D rotary positions on queries and keys of the patch tokens (`rotary_2d`), passed per forward.
- sub-LN: a LayerNorm on the attention's output before its projection (`attention_norm`) and one
  inside the MLP (`mlp_norm`, SwiGLU only).
- post-norm: x + norm(attn(x)), x + norm(mlp(x)) instead of pre-norm (EVA02-E); layer scale
  applies to pre-norm blocks only, as in timm.
- MLP: "gelu" (Linear, exact GELU, Linear) or "swiglu" (`swiglu.SwiGLU`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cliplab.models.layers.blocks import MLP, LayerScale
from cliplab.models.layers.rotary_2d import apply_pairwise_rotary
from cliplab.models.layers.swiglu import SwiGLU

QKV_BIASES = ("qkv", "qv", "none")
EVA_MLPS = ("gelu", "swiglu")
Rotary = tuple[torch.Tensor, torch.Tensor]


class EvaAttention(nn.Module):
    """Multi-head self-attention: x [B, T, W] -> [B, T, W] (see the module docstring)."""

    def __init__(self, width: int, heads: int, *, qkv_bias: str = "qkv", norm_eps: float | None = None):
        super().__init__()
        if qkv_bias not in QKV_BIASES:
            raise ValueError(f"qkv_bias must be one of {QKV_BIASES}, got {qkv_bias!r}")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=qkv_bias == "qkv")
        self.q_bias = nn.Parameter(torch.zeros(width)) if qkv_bias == "qv" else None
        self.v_bias = nn.Parameter(torch.zeros(width)) if qkv_bias == "qv" else None
        self.norm = nn.LayerNorm(width, eps=norm_eps) if norm_eps is not None else nn.Identity()
        self.out = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, rotary: Rotary | None = None, skip: int = 0) -> torch.Tensor:
        """rotary: (cos, sin) [T - skip, D] for the tokens after the first `skip`, or None."""
        batch, length, width = x.shape
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias))
            qkv = F.linear(x, self.qkv.weight, bias)
        else:
            qkv = self.qkv(x)
        qkv = qkv.view(batch, length, 3, self.heads, width // self.heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, H, T, D]
        if rotary is not None:
            cos, sin = rotary
            query, key = apply_pairwise_rotary(query, cos, sin, skip), apply_pairwise_rotary(key, cos, sin, skip)
        attended = F.scaled_dot_product_attention(query, key, value)
        return self.out(self.norm(attended.transpose(1, 2).reshape(batch, length, width)))


class EvaBlock(nn.Module):
    """[B, T, W] -> [B, T, W], pre-norm (or post-norm) attention then MLP."""

    def __init__(self, width: int, heads: int, mlp_width: int, *, mlp: str = "gelu", mlp_norm: bool = False,
                 qkv_bias: str = "qkv", attention_norm: bool = False, post_norm: bool = False,
                 layer_scale: float | None = None, norm_eps: float = 1e-6):
        super().__init__()
        if mlp not in EVA_MLPS:
            raise ValueError(f"mlp must be one of {EVA_MLPS}, got {mlp!r}")
        if mlp_norm and mlp != "swiglu":
            raise ValueError("mlp_norm needs mlp='swiglu'")
        if post_norm and layer_scale is not None:
            raise ValueError("layer_scale applies to pre-norm blocks only")
        self.post_norm = post_norm
        self.norm_attn = nn.LayerNorm(width, eps=norm_eps)
        self.attn = EvaAttention(width, heads, qkv_bias=qkv_bias, norm_eps=norm_eps if attention_norm else None)
        self.scale_attn = LayerScale(width, layer_scale) if layer_scale is not None else nn.Identity()
        self.norm_mlp = nn.LayerNorm(width, eps=norm_eps)
        self.mlp = (SwiGLU(width, mlp_width, norm_eps=norm_eps if mlp_norm else None) if mlp == "swiglu"
                    else MLP(width, mlp_width, "gelu"))
        self.scale_mlp = LayerScale(width, layer_scale) if layer_scale is not None else nn.Identity()

    def forward(self, x: torch.Tensor, rotary: Rotary | None = None, skip: int = 0) -> torch.Tensor:
        if self.post_norm:
            x = x + self.norm_attn(self.attn(x, rotary, skip))
            return x + self.norm_mlp(self.mlp(x))
        x = x + self.scale_attn(self.attn(self.norm_attn(x), rotary, skip))
        return x + self.scale_mlp(self.mlp(self.norm_mlp(x)))
