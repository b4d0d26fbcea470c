"""Relative position bias from a small MLP of log-spaced offsets (timm's `RelPosMlp`, its default
"cr" mode, as `VisionTransformerRelPos` uses it), and the transformer block that adds it to its
attention logits.

For a G x G grid of patch tokens, every pair (query i, key j) has the offset (dy, dx) =
(y_i - y_j, x_i - x_j), each in [-(G-1), G-1]. The MLP maps sign(d) * log(1 + |d|) per axis, a
table of (2G-1)^2 offsets [.., 2], to one bias per head; bias[h, i, j] = mlp(offset(i, j))[h]. Prefix
tokens (a class token) get zero bias, to and from every token.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from cliplab.models.layers.blocks import TransformerBlock

POSITION_MLP_DROPOUT = 0.125  # timm's, after the hidden ReLU, in training only


@lru_cache(maxsize=8)
def relative_offsets(grid_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(log-spaced offsets [(2G-1)^2, 2] float32, index Long[G^2, G^2] into them) for a G x G
    grid, tokens in row-major order. Cached: treat as read-only."""
    steps = torch.arange(-(grid_size - 1), grid_size, dtype=torch.float32, device="cpu")
    offsets = torch.stack(torch.meshgrid(steps, steps, indexing="ij"), dim=-1).reshape(-1, 2)  # (dy, dx)
    log_offsets = torch.sign(offsets) * torch.log(1.0 + offsets.abs())
    rows, columns = torch.meshgrid(*2 * [torch.arange(grid_size, device="cpu")], indexing="ij")
    coordinates = torch.stack((rows.flatten(), columns.flatten()))  # [2, G^2]
    difference = coordinates[:, :, None] - coordinates[:, None, :] + grid_size - 1  # [2, G^2, G^2] in [0, 2G-2]
    index = difference[0] * (2 * grid_size - 1) + difference[1]
    return log_offsets, index


class RelativePositionMlp(nn.Module):
    """() -> attention bias [1, heads, T, T], T = prefix_tokens + grid_size^2."""

    def __init__(self, grid_size: int, heads: int, hidden_width: int, prefix_tokens: int = 0):
        super().__init__()
        self.grid_size, self.heads, self.prefix_tokens = grid_size, heads, prefix_tokens
        self.fc = nn.Linear(2, hidden_width)
        self.activation = nn.ReLU()
        self.dropout = nn.Dropout(POSITION_MLP_DROPOUT)
        self.proj = nn.Linear(hidden_width, heads)

    def forward(self) -> torch.Tensor:
        log_offsets, index = relative_offsets(self.grid_size)
        device = self.fc.weight.device
        per_offset = self.proj(self.dropout(self.activation(self.fc(log_offsets.to(device)))))  # [(2G-1)^2, H]
        bias = per_offset[index.to(device)].permute(2, 0, 1)  # [H, G^2, G^2]
        prefix = self.prefix_tokens
        return nn.functional.pad(bias, [prefix, 0, prefix, 0]).unsqueeze(0)


class RelativePositionBlock(TransformerBlock):
    """A `TransformerBlock` whose attention logits get its own `RelativePositionMlp` bias:
    x [B, T, W] -> [B, T, W]. grid_size, prefix_tokens, position_width: the bias's; the rest as
    `TransformerBlock`'s options."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, *, grid_size: int, prefix_tokens: int,
                 position_width: int, **block_options):
        super().__init__(width, heads, mlp_ratio, **block_options)
        self.relative_position = RelativePositionMlp(grid_size, heads, position_width, prefix_tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x, attn_mask=self.relative_position().to(x.dtype))
