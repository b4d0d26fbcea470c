"""Decoupled contrastive learning (DCL, arXiv 2110.06848) and the InfoNCE it generalises.

For one anchor row with logits s (its positive at column p):

    InfoNCE:  l = logsumexp_j s_j            - s_p
    DCL:      l = logsumexp_{j != p} s_j     - s_p

DCL removes the positive from the softmax denominator, so a confident positive no longer shrinks
the gradient on the negatives. Both are evaluated with logsumexp (never exp then log, which
overflows at large logit scales and in half precision).

The symmetric loss averages the image-to-text rows (image i against all texts) and the
text-to-image rows (text j against all images) over the global batch. With an extra latent
projection (CLOOB / x-clip `extra_latent_projection`) the image-to-text direction is scored with a
second pair of latents; otherwise both directions use the same ones.
"""

from __future__ import annotations

import torch

from cliplab.losses.common import (
    DEFAULT_MAX_LOGIT_SCALE,
    check_feature_pair,
    clamp_logit_scale,
    to_fp32_features,
)
from cliplab.losses.xclip.global_batch import gather_columns, locate_rows, sum_shares_over_ranks


def contrastive_row_losses(logits: torch.Tensor, positive_index: torch.Tensor, *, decoupled: bool) -> torch.Tensor:
    """Per-anchor contrastive loss.

    logits: [R, C] float, row r scored against every column; positive_index: [R] long, the column
    of row r's positive. Returns [R] float: InfoNCE, or DCL (positive left out of the
    denominator) when `decoupled`. DCL needs C >= 2: with one column the denominator is empty.
    """
    if decoupled and logits.shape[1] < 2:
        raise ValueError(f"decoupled contrastive loss needs at least 2 columns (a negative), got {logits.shape[1]}")
    positive_logits = logits.gather(1, positive_index[:, None]).squeeze(1)
    if decoupled:
        is_positive = torch.zeros_like(logits, dtype=torch.bool)
        is_positive.scatter_(1, positive_index[:, None], True)
        logits = logits.masked_fill(is_positive, float("-inf"))
    return torch.logsumexp(logits, dim=1) - positive_logits


def symmetric_contrastive_share(
    image_rows_i2t: torch.Tensor,
    text_columns_i2t: torch.Tensor,
    text_rows_t2i: torch.Tensor,
    image_columns_t2i: torch.Tensor,
    positive_index: torch.Tensor,
    global_batch_size: int,
    logit_scale: torch.Tensor,
    *,
    decoupled: bool,
) -> torch.Tensor:
    """This rank's share of the symmetric contrastive loss over the global batch.

    image_rows_i2t: [R, D] this rank's image latents for the image-to-text direction;
    text_columns_i2t: [G, D] every rank's text latents for that direction;
    text_rows_t2i: [R, D] and image_columns_t2i: [G, D] likewise for text-to-image;
    positive_index: [R] long, global index of each local row; logit_scale: 0-d float.
    All latents L2-normalised fp32. Returns 0-d: (sum of this rank's 2R row losses) / (2G), so the
    shares of all ranks sum to the mean of the two directions' mean losses.
    """
    logits_per_image = logit_scale * image_rows_i2t @ text_columns_i2t.T
    logits_per_text = logit_scale * text_rows_t2i @ image_columns_t2i.T
    image_to_text = contrastive_row_losses(logits_per_image, positive_index, decoupled=decoupled)
    text_to_image = contrastive_row_losses(logits_per_text, positive_index, decoupled=decoupled)
    return (image_to_text.sum() + text_to_image.sum()) / (2 * global_batch_size)


def prepare_latents(features: torch.Tensor, normalize_eps: float) -> torch.Tensor:
    """[B, D] any float -> [B, D] fp32, L2-normalised."""
    return to_fp32_features(features, normalize=True, eps=normalize_eps)


def global_contrastive_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
    *,
    decoupled: bool,
    image_features_i2t: torch.Tensor | None = None,
    text_features_i2t: torch.Tensor | None = None,
    max_logit_scale: float | None = DEFAULT_MAX_LOGIT_SCALE,
    normalize_eps: float = 1e-6,
) -> torch.Tensor:
    """Symmetric InfoNCE or DCL over the batch of all processes; 0-d fp32, identical on every rank.

    image_features / text_features: [B, D] this rank's pooled latents (normalised here);
    logit_scale: the exponentiated scale, clamped to `max_logit_scale`.
    image_features_i2t / text_features_i2t: [B, D] optional second latents (extra latent
    projection) scoring the image-to-text direction; both or neither.
    Under torch.distributed the columns are gathered from every rank; gradient convention in
    `cliplab.losses.xclip.global_batch`.
    """
    check_feature_pair(image_features, text_features)
    if (image_features_i2t is None) != (text_features_i2t is None):
        raise ValueError("image_features_i2t and text_features_i2t must be given together or not at all")
    if image_features_i2t is None:
        image_features_i2t, text_features_i2t = image_features, text_features
    else:
        check_feature_pair(image_features_i2t, text_features_i2t, "image_features_i2t", "text_features_i2t")
        if image_features_i2t.shape[0] != image_features.shape[0]:
            raise ValueError(
                f"image_features_i2t must have the batch size of image_features ({image_features.shape[0]}), "
                f"got {image_features_i2t.shape[0]}"
            )
    scale = clamp_logit_scale(logit_scale, max_logit_scale, image_features)
    image_t2i, text_t2i = prepare_latents(image_features, normalize_eps), prepare_latents(text_features, normalize_eps)
    image_i2t = prepare_latents(image_features_i2t, normalize_eps)
    text_i2t = prepare_latents(text_features_i2t, normalize_eps)
    rows = locate_rows(image_t2i.shape[0], image_t2i.device)
    share = symmetric_contrastive_share(
        image_i2t,
        gather_columns(text_i2t, rows),
        text_t2i,
        gather_columns(image_t2i, rows),
        rows.positive_index(image_t2i.shape[0], image_t2i.device),
        rows.global_batch_size,
        scale,
        decoupled=decoupled,
    )
    return sum_shares_over_ranks(share)

