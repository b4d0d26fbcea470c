"""Swin Transformer's layers (Liu et al. 2021, in timm's parameter layout): self-attention inside
non-overlapping windows with a learned relative position bias, shifted windows, and patch merging.

Shapes: B batch, H x W the token grid, C width, (h, w) the window, N = h * w tokens per window,
nW windows per image, heads attention heads. Feature maps are [B, H, W, C] throughout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cliplab.models.layers.blocks import MLP
from cliplab.models.layers.drop_path import DropPath

# The additive mask between tokens of different regions of a shifted window: timm's value (not -inf,
# so that the softmax equals timm's to the last bits).
OTHER_REGION_BIAS = -100.0


def window_partition(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """x [B, H, W, C] (H, W multiples of the window) -> windows [B, nW, N, C], windows row-major
    over the grid, tokens row-major inside a window."""
    batch, height, width, channels = x.shape
    (rows, cols) = window
    grid = x.view(batch, height // rows, rows, width // cols, cols, channels).permute(0, 1, 3, 2, 4, 5)
    return grid.reshape(batch, -1, rows * cols, channels)


def window_merge(windows: torch.Tensor, window: tuple[int, int], height: int, width: int) -> torch.Tensor:
    """Inverse of `window_partition`: windows [B, nW, N, C] -> x [B, H, W, C]."""
    batch, channels = windows.shape[0], windows.shape[-1]
    (rows, cols) = window
    grid = windows.view(batch, height // rows, width // cols, rows, cols, channels).permute(0, 1, 3, 2, 4, 5)
    return grid.reshape(batch, height, width, channels)


def relative_position_index(window: tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
    """Long [N, N]: for query token i and key token j of a window, the row of the bias table that
    holds their offset (dr, dc), i.e. (dr + h - 1) * (2w - 1) + (dc + w - 1)."""
    (rows, cols) = window
    row, col = torch.meshgrid(torch.arange(rows, device=device), torch.arange(cols, device=device), indexing="ij")
    row, col = row.flatten(), col.flatten()
    return (row[:, None] - row[None, :] + rows - 1) * (2 * cols - 1) + (col[:, None] - col[None, :] + cols - 1)


def shifted_window_mask(height: int, width: int, window: tuple[int, int], shift: tuple[int, int],
                        device: torch.device | None = None) -> torch.Tensor:
    """Float [nW, N, N] for a grid cyclically shifted by `shift` (H, W multiples of the window):
    0 between tokens of the same region of the unshifted image, OTHER_REGION_BIAS between tokens that
    the roll brought together from different regions (the three bands along each axis)."""
    region = torch.zeros(height, width, dtype=torch.long, device=device)
    bands = [(slice(0, -size), slice(-size, -offset), slice(-offset, None)) for size, offset in zip(window, shift)]
    for label, (rows, cols) in enumerate((rows, cols) for rows in bands[0] for cols in bands[1]):
        region[rows, cols] = label
    labels = window_partition(region[None, :, :, None], window)[0, :, :, 0]  # [nW, N]
    different = labels[:, :, None] != labels[:, None, :]
    return torch.zeros(different.shape, device=device).masked_fill(different, OTHER_REGION_BIAS)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window: windows [B, nW, N, C] -> [B, nW, N, C].

    Logits get a learned bias per head and relative offset (`relative_position_bias`,
    [(2h - 1)(2w - 1), heads]) and, for shifted windows, `shifted_window_mask`. qkv / out as
    cliplab's `SelfAttention` (one packed Linear, then the output Linear)."""

    def __init__(self, width: int, heads: int, window: tuple[int, int], *, qkv_bias: bool = True):
        super().__init__()
        self.heads, self.window = heads, window
        self.qkv = nn.Linear(width, 3 * width, bias=qkv_bias)
        self.out = nn.Linear(width, width)
        self.relative_position_bias = nn.Parameter(torch.empty((2 * window[0] - 1) * (2 * window[1] - 1), heads))
        nn.init.trunc_normal_(self.relative_position_bias, std=0.02)

    def position_bias(self) -> torch.Tensor:
        """[heads, N, N]: the bias of every query/key pair of a window."""
        tokens = self.window[0] * self.window[1]
        index = relative_position_index(self.window, self.relative_position_bias.device)
        return self.relative_position_bias[index.view(-1)].view(tokens, tokens, -1).permute(2, 0, 1)

    def forward(self, windows: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """mask: [nW, N, N] additive, or None."""
        batch, count, tokens, width = windows.shape
        qkv = self.qkv(windows).view(batch, count, tokens, 3, self.heads, width // self.heads)
        query, key, value = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)  # each [B, nW, heads, N, D]
        bias = self.position_bias() if mask is None else self.position_bias() + mask[:, None]
        attended = F.scaled_dot_product_attention(query, key, value, attn_mask=bias.to(query.dtype))
        return self.out(attended.transpose(2, 3).reshape(batch, count, tokens, width))


class SwinBlock(nn.Module):
    """x [B, H, W, C] -> [B, H, W, C]: x + drop_path(window attention of norm(x)), then
    x + drop_path(mlp(norm(x))), for the grid size `resolution` (H, W) it is built for.

    A window no smaller than the grid covers it whole and is never shifted (timm's rule); `shifted`
    blocks roll the grid by half a window first (and back after). A grid that is not a multiple
    of the window is padded with zeros after the norm (they take part as keys, as in timm), and
    cropped again.
    """

    def __init__(self, width: int, heads: int, resolution: tuple[int, int], window: int, *, shifted: bool,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, norm_eps: float = 1e-5, drop_path: float = 0.0):
        super().__init__()
        self.window = tuple(min(size, window) for size in resolution)
        self.shift = tuple(window // 2 if shifted and size > window else 0 for size in resolution)
        self.norm_attn = nn.LayerNorm(width, eps=norm_eps)
        self.attn = WindowAttention(width, heads, self.window, qkv_bias=qkv_bias)
        self.norm_mlp = nn.LayerNorm(width, eps=norm_eps)
        self.mlp = MLP(width, int(width * mlp_ratio), "gelu")
        self.drop_path = DropPath(drop_path)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[1:3]
        if any(self.shift):
            x = torch.roll(x, shifts=(-self.shift[0], -self.shift[1]), dims=(1, 2))
        x = F.pad(x, (0, 0, 0, -width % self.window[1], 0, -height % self.window[0]))
        padded_height, padded_width = x.shape[1:3]
        mask = (shifted_window_mask(padded_height, padded_width, self.window, self.shift, x.device)
                if any(self.shift) else None)
        attended = self.attn(window_partition(x, self.window), mask)
        x = window_merge(attended, self.window, padded_height, padded_width)[:, :height, :width]
        return torch.roll(x, shifts=self.shift, dims=(1, 2)) if any(self.shift) else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self._attend(self.norm_attn(x)))
        return x + self.drop_path(self.mlp(self.norm_mlp(x)))


class PatchMerging(nn.Module):
    """x [B, H, W, C] -> [B, ceil(H / 2), ceil(W / 2), C_out]: each 2x2 neighbourhood's four vectors
    concatenated (timm's order: (row 0, col 0), (1, 0), (0, 1), (1, 1)), LayerNorm over the 4C
    values, Linear without bias. An odd side is padded with zeros first."""

    def __init__(self, width: int, out_width: int, norm_eps: float = 1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(4 * width, eps=norm_eps)
        self.reduction = nn.Linear(4 * width, out_width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = x.shape
        x = F.pad(x, (0, 0, 0, width % 2, 0, height % 2))
        x = x.reshape(batch, (height + 1) // 2, 2, (width + 1) // 2, 2, channels).permute(0, 1, 3, 4, 2, 5)
        return self.reduction(self.norm(x.flatten(3)))
