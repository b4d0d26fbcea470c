"""What the train-time random drops share (stochastic depth's `DropPath`, FLIP's `PatchDropout`):
a probability in [0, 1), and the identity in eval mode or at probability 0."""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn


class RandomDrop(nn.Module, ABC):
    """x -> `drop(x)` while training with a probability above 0, x otherwise."""

    def __init__(self, probability: float):
        super().__init__()
        if not 0.0 <= probability < 1.0:
            raise ValueError(f"probability must be in [0, 1), got {probability!r}")
        self.probability = probability

    @abstractmethod
    def drop(self, x: torch.Tensor) -> torch.Tensor:
        """The random drop of x [B, ...], each sample drawn on its own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.probability == 0.0:
            return x
        return self.drop(x)

    def extra_repr(self) -> str:
        return f"probability={self.probability}"
