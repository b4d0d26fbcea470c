"""GeGLU feed-forward layer with its own input LayerNorm (timm's `vitamin.GeGluMlp`, ViTamin's), and
the transformer block that uses it.

x [..., W] -> proj(gelu(gate(norm(x))) * fc(norm(x))) [..., W], hidden width H; the LayerNorm
(eps 1e-6) is inside the layer, so a block that normalises before its MLP normalises twice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cliplab.models.layers.blocks import TransformerBlock

NORM_EPS = 1e-6


class GeGLU(nn.Module):
    """[..., W] -> [..., W] through hidden width `hidden_width` (timm's w0 = gate, w1 = fc, w2 = proj)."""

    def __init__(self, width: int, hidden_width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=NORM_EPS)
        self.gate = nn.Linear(width, hidden_width)
        self.fc = nn.Linear(width, hidden_width)
        self.proj = nn.Linear(hidden_width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normalised = self.norm(x)
        return self.proj(F.gelu(self.gate(normalised)) * self.fc(normalised))


class GeGluBlock(TransformerBlock):
    """A `TransformerBlock` whose MLP is a `GeGLU` (ViTamin's timm `Block` with `GeGluMlp`): x [B, T, W]
    -> [B, T, W]; the block's own norm before the MLP, then GeGLU's. mlp_width: GeGLU's hidden width;
    the other options as `TransformerBlock`'s."""

    def __init__(self, width: int, heads: int, *, mlp_width: int, **block_options):
        super().__init__(width, heads, mlp_width=mlp_width, **block_options)
        self.mlp = GeGLU(width, mlp_width)
