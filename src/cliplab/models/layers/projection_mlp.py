"""A two-layer MLP that maps a pooled vector into another width (open_clip's `timm_proj="mlp"`
head after a timm image tower)."""

from __future__ import annotations

import torch
from torch import nn

from cliplab.models.layers.activations import make_activation


class ProjectionMLP(nn.Module):
    """x [..., W] -> [..., W_out]: Linear (with bias) to `hidden_width`, activation, dropout,
    Linear to `output_width` (bias when `output_bias`)."""

    def __init__(self, width: int, hidden_width: int, output_width: int, *, output_bias: bool = True,
                 activation: str = "gelu", dropout: float = 0.0):
        super().__init__()
        self.fc = nn.Linear(width, hidden_width)
        self.activation = make_activation(activation)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden_width, output_width, bias=output_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.dropout(self.activation(self.fc(x))))
