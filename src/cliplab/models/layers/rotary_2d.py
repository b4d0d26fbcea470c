"""Two-dimensional (axial) rotary position embedding for patch tokens, in the pairwise layout
EVA02 and Perception Encoder use (timm's `RotaryEmbeddingCat` with `in_pixels=False`).

A head dimension D holds D / 2 rotated pairs (x[2i], x[2i + 1]). The first D / 4 pairs turn with
the token's first grid coordinate, the last D / 4 with its second, at frequencies
temperature^(-j / (D / 4)), j < D / 4 (the same bands for both axes). The coordinates of a patch at
row r, column c of an H x W grid are (r + offset, c + offset) ("ij") or (c + offset, r + offset)
("xy"); with a reference grid (Hr, Wr) each is rescaled as if the image had that grid
(coordinate / H * Hr), EVA02's rule for running at another resolution than it was trained at.

Shapes: N = H * W patch tokens (row-major), D head dim; tables are float32.
"""

from __future__ import annotations

import torch

GRID_INDEXINGS = ("ij", "xy")


def axial_rotary_tables(grid: tuple[int, int], head_dim: int, *, temperature: float = 10000.0, offset: float = 0.0,
                        reference_grid: tuple[int, int] | None = None, indexing: str = "ij",
                        device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables [N, D] float32 for the patches of an H x W `grid` (see the module docstring);
    each entry is repeated for the two members of its pair. head_dim must be divisible by 4."""
    if head_dim % 4:
        raise ValueError(f"2-D rotary positions need a head dimension divisible by 4, got {head_dim}")
    if indexing not in GRID_INDEXINGS:
        raise ValueError(f"indexing must be one of {GRID_INDEXINGS}, got {indexing!r}")
    bands_per_axis = head_dim // 4
    exponents = torch.arange(bands_per_axis, device=device).to(torch.float32) / bands_per_axis
    frequencies = 1.0 / (temperature ** exponents)  # [D/4]
    references = reference_grid if reference_grid is not None else (None, None)
    rows, columns = (_axis_coordinates(size, reference, offset, device)
                     for size, reference in zip(grid, references))
    row_grid, column_grid = torch.meshgrid(rows, columns, indexing="ij")  # each [H, W]
    axes = (row_grid, column_grid) if indexing == "ij" else (column_grid, row_grid)
    angles = torch.stack(axes, dim=-1).unsqueeze(-1) * frequencies  # [H, W, 2, D/4]
    angles = angles.reshape(grid[0] * grid[1], head_dim // 2)
    return angles.cos().repeat_interleave(2, dim=-1), angles.sin().repeat_interleave(2, dim=-1)


def _axis_coordinates(size: int, reference: int | None, offset: float, device) -> torch.Tensor:
    coordinates = torch.arange(size, device=device).to(torch.float32) + offset
    return coordinates if reference is None else coordinates / size * reference


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """[..., D] -> [..., D]: each pair (a, b) becomes (-b, a)."""
    return torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).reshape(x.shape)


def apply_pairwise_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, skip: int = 0) -> torch.Tensor:
    """Rotate queries or keys x [B, H, T, D] by position, all but the first `skip` tokens (a class
    token has no grid position); cos, sin [T - skip, D]. The rotation runs in the tables' precision
    and the result comes back in x's dtype."""
    patches = x[:, :, skip:]
    rotated = (patches * cos + rotate_pairs(patches) * sin).to(x.dtype)
    return torch.cat((x[:, :, :skip], rotated), dim=2) if skip else rotated
