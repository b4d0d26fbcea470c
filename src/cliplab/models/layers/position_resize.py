"""Learned position tables at another input size: a 2-D patch grid resampled to another grid, a
1-D text table made longer or shorter. Pure functions of tensors; the tower families say which of
their tensors these apply to (`TowerFamily.resize_positions`).

Grid (open_clip's `resize_pos_embed`, timm's `resample_abs_pos_embed`, which compute the same):
    positions [k + Ho*Wo, W] -> [k + Hn*Wn, W]. The first k rows (class or other prefix tokens)
    are kept as they are; the grid rows, row-major, become an image of W channels resized from
    Ho x Wo to Hn x Wn by bicubic interpolation with antialiasing (which acts when shrinking),
    align_corners=False, computed in float32 and returned in the table's dtype.

Text, "interpolate" (open_clip's `resize_text_pos_embed`):
    positions [L, W] -> [N, W] by linear interpolation along the sequence, align_corners=False
    (new row n samples old position (n + 0.5) * L / N - 0.5, clamped to [0, L - 1]).

Text, "longclip" (Long-CLIP, Zhang et al. 2024, "knowledge-preserved stretching"):
    positions [L, W] -> [N, W] with N > L: rows 0..K-1 (K = LONGCLIP_KEPT = 20, the positions
    their analysis finds well trained) are kept; row n >= K takes old position
        s(n) = K + (n - K) / r,  r = (N - K) / (L - K),
    linearly interpolated between its two neighbours, and past the last position L - 1 linearly
    extrapolated from the last two (p[L-1] + (s - (L-1)) * (p[L-1] - p[L-2])). Long-CLIP stretches
    CLIP's 77 positions with ratio r = 4 into 20 + 4 * 57 = 248; that is this rule at N = 248
    (for 77 positions), and for other N the same rule with r = (N - K) / (L - K).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LONGCLIP_KEPT = 20


def resample_position_grid(positions: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int],
                           prefix_tokens: int) -> torch.Tensor:
    """positions [prefix + Ho*Wo, W] -> [prefix + Hn*Wn, W] (module docstring, "Grid")."""
    old_height, old_width = old_grid
    if positions.dim() != 2 or positions.shape[0] != prefix_tokens + old_height * old_width:
        raise ValueError(f"positions must be [{prefix_tokens} + {old_height}*{old_width}, W], "
                         f"got {tuple(positions.shape)}")
    prefix, grid = positions[:prefix_tokens], positions[prefix_tokens:]
    image = grid.float().reshape(1, old_height, old_width, -1).permute(0, 3, 1, 2)  # [1, W, Ho, Wo]
    resized = F.interpolate(image, size=tuple(new_grid), mode="bicubic", antialias=True, align_corners=False)
    resized = resized.permute(0, 2, 3, 1).reshape(new_grid[0] * new_grid[1], -1).to(positions.dtype)
    return torch.cat((prefix, resized)) if prefix_tokens else resized


def interpolate_positions(positions: torch.Tensor, length: int) -> torch.Tensor:
    """positions [L, W] -> [length, W] (module docstring, "interpolate")."""
    _check_sequence(positions, length)
    sequence = positions.float().T.unsqueeze(0)  # [1, W, L]
    resized = F.interpolate(sequence, size=length, mode="linear", antialias=False, align_corners=False)
    return resized[0].T.to(positions.dtype)


def stretch_positions_longclip(positions: torch.Tensor, length: int, kept: int = LONGCLIP_KEPT) -> torch.Tensor:
    """positions [L, W] -> [length, W], length > L (module docstring, "longclip")."""
    _check_sequence(positions, length)
    count = positions.shape[0]
    if count < kept + 2 or length <= count:
        raise ValueError(f"Long-CLIP stretching keeps the first {kept} of at least {kept + 2} positions and "
                         f"lengthens the table: it needs {kept + 2} <= L < N, got L={count}, N={length}")
    table = positions.double()
    ratio = (length - kept) / (count - kept)
    source = kept + torch.arange(length - kept, dtype=torch.float64, device=table.device) / ratio  # [N - K]
    lower = source.floor().long().clamp(max=count - 2)
    weight = (source - lower).unsqueeze(1)
    stretched = table[lower] + weight * (table[lower + 1] - table[lower])
    return torch.cat((table[:kept], stretched)).to(positions.dtype)


def _check_sequence(positions: torch.Tensor, length: int) -> None:
    if positions.dim() != 2:
        raise ValueError(f"positions must be [L, W], got {tuple(positions.shape)}")
    if not isinstance(length, int) or length < 1:
        raise ValueError(f"length must be a positive int, got {length!r}")
