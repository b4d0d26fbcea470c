"""Tensor-level augmentations of a whole batch, for the self-supervised and multiview terms.

They work on what the data loader already produced (normalised images, token ids), so the loader
stays unchanged, and they draw only from the torch.Generator they are given, so a seeded run is
reproducible and a replayed micro-batch can get the same views back (save/restore its state).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F


def random_resized_crop_and_flip(
    images: torch.Tensor,
    *,
    crop_scale: tuple[float, float],
    crop_ratio: tuple[float, float],
    flip_probability: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A random crop of each image, resized back to the input size, then a random horizontal flip.

    images: [B, C, H, W] float (any normalisation). The crop covers a fraction of the image area
    drawn uniformly from crop_scale, with aspect ratio (width / height) log-uniform in crop_ratio;
    each side is clipped to the image (so extreme ratios give a slightly smaller area instead of
    torchvision's retry loop). Bilinear resampling with border padding. Draws one [B, 5] uniform
    tensor from `generator` (any device). Returns [B, C, H, W] of images.dtype.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a 4-D float tensor [B, C, H, W], got "
                         f"{getattr(images, 'dtype', type(images))} {tuple(getattr(images, 'shape', ()))}")
    count, _, height, width = images.shape
    draw_device = generator.device if generator is not None else images.device
    draws = torch.rand(count, 5, generator=generator, device=draw_device, dtype=torch.float64).to(images.device)
    area_fraction = crop_scale[0] + (crop_scale[1] - crop_scale[0]) * draws[:, 0]
    log_ratio_low, log_ratio_high = math.log(crop_ratio[0]), math.log(crop_ratio[1])
    aspect = torch.exp(log_ratio_low + (log_ratio_high - log_ratio_low) * draws[:, 1])
    crop_width = torch.sqrt(area_fraction * aspect * height / width).clamp(max=1.0)
    crop_height = torch.sqrt(area_fraction / aspect * width / height).clamp(max=1.0)
    center_x = (draws[:, 2] * 2 - 1) * (1 - crop_width)
    center_y = (draws[:, 3] * 2 - 1) * (1 - crop_height)
    mirror = torch.where(draws[:, 4] < flip_probability, -1.0, 1.0).to(torch.float64)
    # affine_grid maps output coordinates in [-1, 1] to input coordinates: scale then shift.
    theta = torch.zeros(count, 2, 3, dtype=torch.float64, device=images.device)
    theta[:, 0, 0] = crop_width * mirror
    theta[:, 0, 2] = center_x
    theta[:, 1, 1] = crop_height
    theta[:, 1, 2] = center_y
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def drop_tokens(
    tokens: torch.Tensor,
    *,
    protected_ids: Iterable[int],
    pad_id: int,
    drop_probability: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Word dropout: each ordinary token is deleted with `drop_probability`, the rest close up.

    tokens: [B, T] long, right-padded with pad_id. Protected ids (start, end, other specials) are
    never dropped, so the sequence keeps its frame and any end-of-text pooling still finds its end
    token; the freed positions at the end become padding. Deletion (rather than substituting a
    mask token) keeps the text in the tokenizer's ordinary distribution. Draws one [B, T] uniform
    from `generator`. Returns [B, T] long.
    """
    if not isinstance(tokens, torch.Tensor) or tokens.dtype != torch.long or tokens.dim() != 2:
        raise ValueError(f"tokens must be a 2-D long tensor [B, T], got "
                         f"{getattr(tokens, 'dtype', type(tokens))} {tuple(getattr(tokens, 'shape', ()))}")
    if not 0.0 <= drop_probability < 1.0:
        raise ValueError(f"drop_probability must be in [0, 1), got {drop_probability}")
    protected = torch.tensor(sorted(set(int(i) for i in protected_ids) | {pad_id}), device=tokens.device)
    draw_device = generator.device if generator is not None else tokens.device
    draws = torch.rand(tokens.shape, generator=generator, device=draw_device).to(tokens.device)
    is_padding = tokens == pad_id
    keep = ~is_padding & (torch.isin(tokens, protected) | (draws >= drop_probability))
    new_position = keep.long().cumsum(dim=1) - 1
    rows = torch.arange(tokens.shape[0], device=tokens.device)[:, None].expand_as(tokens)
    augmented = torch.full_like(tokens, pad_id)
    augmented[rows[keep], new_position[keep]] = tokens[keep]
    return augmented
