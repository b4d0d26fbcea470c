"""SwiGLU feed-forward layer (Shazeer 2020, "GLU Variants Improve Transformer"), as EVA02 uses it.

x [..., W] -> proj(norm(silu(gate(x)) * fc(x))) [..., W], with hidden width H. `norm` is an
optional LayerNorm on the hidden vector (EVA02's sub-LN, timm's `scale_mlp`).

The gate and value projections are two Linears here; timm stores them either that way (`SwiGLU`:
fc1_g, fc1_x) or packed into one Linear with the gate rows first (`GluMlp` with SiLU and
`gate_last=False`: fc1 [2H, W]). Both are the same numbers in another layout, which the tower
families' key rules convert.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SwiGLU(nn.Module):
    """[..., W] -> [..., W] through hidden width `hidden_width`; norm_eps: the hidden LayerNorm's
    eps, or None for no norm."""

    def __init__(self, width: int, hidden_width: int, *, norm_eps: float | None = None):
        super().__init__()
        self.gate = nn.Linear(width, hidden_width)
        self.fc = nn.Linear(width, hidden_width)
        self.norm = nn.LayerNorm(hidden_width, eps=norm_eps) if norm_eps is not None else nn.Identity()
        self.proj = nn.Linear(hidden_width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(F.silu(self.gate(x)) * self.fc(x)))
