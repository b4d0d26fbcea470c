"""Activation functions by name: the three that CLIP-family checkpoints were trained with."""

from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = ("gelu", "gelu_tanh", "quick_gelu")


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x): OpenAI CLIP's approximation of GELU (its checkpoints need it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def make_activation(name: str) -> nn.Module:
    """"gelu" (exact, erf), "gelu_tanh" (tanh approximation, HF SigLIP's default) or "quick_gelu"."""
    if name == "gelu":
        return nn.GELU()
    if name == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    if name == "quick_gelu":
        return QuickGELU()
    raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
