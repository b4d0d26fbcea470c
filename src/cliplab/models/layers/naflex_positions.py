"""A learned square grid of position embeddings resized to each image's own grid of patches (NaFlex).

The grid [G, G, W] is resized to an image's (rows, columns) with bilinear interpolation, half-pixel
centres, and antialiasing when shrinking (`F.interpolate(mode="bilinear", align_corners=False,
antialias=True)`), in float32, then laid out row by row as that image's patches are, and padded to
the sequence length. Images of one shape share one resize.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resized_positions(grid: torch.Tensor, spatial_shapes: torch.Tensor, length: int) -> torch.Tensor:
    """grid [G, G, W], spatial_shapes Long[B, 2] (rows, columns; rows * columns <= length) ->
    positions [B, length, W] in grid's dtype, zero after each image's rows * columns entries."""
    batch, width = spatial_shapes.shape[0], grid.shape[-1]
    positions = grid.new_zeros(batch, length, width)
    channels_first = grid.permute(2, 0, 1)[None].float()  # [1, W, G, G]
    shapes = [tuple(shape) for shape in spatial_shapes.tolist()]
    for rows, columns in dict.fromkeys(shapes):
        if rows < 1 or columns < 1 or rows * columns > length:
            raise ValueError(f"spatial_shapes must hold (rows, columns) with 1 <= rows * columns <= {length} "
                             f"(the patches per image), got ({rows}, {columns})")
        resized = F.interpolate(channels_first, size=(rows, columns), mode="bilinear", align_corners=False,
                                antialias=True)
        flat = resized[0].flatten(1).transpose(0, 1).to(grid.dtype)  # [rows * columns, W]
        for index in (index for index, shape in enumerate(shapes) if shape == (rows, columns)):
            positions[index, :rows * columns] = flat
    return positions
