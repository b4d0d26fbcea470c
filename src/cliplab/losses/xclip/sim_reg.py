"""Similarity regularisation (x-clip `sim_reg_loss`, arXiv 2309.08773).

Keeps the geometry of the two modalities alike: with normalised latents x_i (images) and y_i
(texts) over the global batch of G pairs,

    sim_reg = 1 / (G (G - 1)) sum_{i != j} (<x_i, x_j> - <y_i, y_j>)^2

the mean squared difference between the off-diagonal entries of the image-image and text-text
cosine similarity matrices (the diagonals are 1 for both and carry nothing). Gradient reaches both
modalities, as in x-clip. Rows are sharded over ranks, columns gathered.
"""

from __future__ import annotations

import torch

from cliplab.losses.common import check_feature_pair
from cliplab.losses.xclip.dcl import prepare_latents
from cliplab.losses.xclip.global_batch import gather_columns, locate_rows, sum_shares_over_ranks


def similarity_regularization_share(
    image_rows: torch.Tensor,
    text_rows: torch.Tensor,
    image_columns: torch.Tensor,
    text_columns: torch.Tensor,
    positive_index: torch.Tensor,
    global_batch_size: int,
) -> torch.Tensor:
    """This rank's share: rows [R, D] and columns [G, D], normalised fp32; positive_index [R] long,
    the global index of each local row (its diagonal entry). Returns 0-d fp32."""
    squared_gap = (image_rows @ image_columns.T - text_rows @ text_columns.T).square()  # [R, G]
    is_diagonal = torch.zeros_like(squared_gap, dtype=torch.bool)
    is_diagonal.scatter_(1, positive_index[:, None], True)
    off_diagonal_pairs = global_batch_size * (global_batch_size - 1)
    return squared_gap.masked_fill(is_diagonal, 0.0).sum() / off_diagonal_pairs


def similarity_regularization_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, *, normalize_eps: float = 1e-6
) -> torch.Tensor:
    """image_features, text_features: [B, D] float (normalised here) -> 0-d fp32 over the global batch."""
    check_feature_pair(image_features, text_features)
    image_latents = prepare_latents(image_features, normalize_eps)
    text_latents = prepare_latents(text_features, normalize_eps)
    rows = locate_rows(image_latents.shape[0], image_latents.device)
    if rows.global_batch_size < 2:
        raise ValueError("similarity regularisation needs a global batch of at least 2 pairs")
    share = similarity_regularization_share(
        image_latents, text_latents, gather_columns(image_latents, rows), gather_columns(text_latents, rows),
        rows.positive_index(image_latents.shape[0], image_latents.device), rows.global_batch_size,
    )
    return sum_shares_over_ranks(share)
