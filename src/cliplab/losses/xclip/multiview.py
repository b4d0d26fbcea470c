"""Multiview contrastive loss (x-clip `multiview_loss_weight`, from DeCLIP arXiv 2110.05208).

Given text views a = 0..A-1 and image views b = 0..V-1 of the same pairs (view 0 the original), the
contrastive loss (InfoNCE, or DCL when decoupled) is computed for every (text view, image view)
combination except (original, original), which is the main contrastive term, and averaged:

    multiview = mean_{(a, b) != (0, 0)} contrastive(text view a, image view b)

Each view is gathered once; all pairs' shares are summed and reduced over ranks in one collective,
so the value equals the single-process loss on the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from cliplab.losses.common import DEFAULT_MAX_LOGIT_SCALE, check_feature_pair, clamp_logit_scale
from cliplab.losses.xclip.dcl import prepare_latents, symmetric_contrastive_share
from cliplab.losses.xclip.global_batch import gather_columns, locate_rows, sum_shares_over_ranks


def _check_views(views: Sequence[torch.Tensor], name: str) -> None:
    if isinstance(views, torch.Tensor) or not isinstance(views, Sequence) or len(views) == 0:
        raise ValueError(f"{name} must be a non-empty sequence of [B, D] tensors")


def multiview_contrastive_loss(
    image_views: Sequence[torch.Tensor],
    text_views: Sequence[torch.Tensor],
    logit_scale: torch.Tensor | float,
    *,
    decoupled: bool = False,
    image_views_i2t: Sequence[torch.Tensor] | None = None,
    text_views_i2t: Sequence[torch.Tensor] | None = None,
    max_logit_scale: float | None = DEFAULT_MAX_LOGIT_SCALE,
    normalize_eps: float = 1e-6,
) -> torch.Tensor:
    """Mean contrastive loss over all (text view, image view) pairs but (0, 0); 0-d fp32.

    image_views: V tensors [B, D], view 0 the original image latents; text_views: A tensors [B, D],
    view 0 the original text latents; V * A >= 2. image_views_i2t / text_views_i2t: optional
    second latents of the same views for the image-to-text direction (extra latent projection).
    """
    _check_views(image_views, "image_views")
    _check_views(text_views, "text_views")
    if len(image_views) * len(text_views) < 2:
        raise ValueError("multiview needs an augmented image or text view besides the originals")
    if (image_views_i2t is None) != (text_views_i2t is None):
        raise ValueError("image_views_i2t and text_views_i2t must be given together or not at all")
    if image_views_i2t is None:
        image_views_i2t, text_views_i2t = image_views, text_views
    else:
        _check_views(image_views_i2t, "image_views_i2t")
        _check_views(text_views_i2t, "text_views_i2t")
        if len(image_views_i2t) != len(image_views) or len(text_views_i2t) != len(text_views):
            raise ValueError("image_views_i2t / text_views_i2t must have as many views as image_views / text_views")
    for image_view in list(image_views) + list(image_views_i2t):
        for text_view in list(text_views) + list(text_views_i2t):
            check_feature_pair(image_view, text_view, "image view", "text view")

    reference = image_views[0]
    scale = clamp_logit_scale(logit_scale, max_logit_scale, reference)
    rows = locate_rows(reference.shape[0], reference.device)
    positive_index = rows.positive_index(reference.shape[0], reference.device)

    def local_and_gathered(views: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        prepared = [prepare_latents(view, normalize_eps) for view in views]
        return [(latents, gather_columns(latents, rows)) for latents in prepared]

    images_t2i, texts_t2i = local_and_gathered(image_views), local_and_gathered(text_views)
    same_i2t = image_views_i2t is image_views
    images_i2t = images_t2i if same_i2t else local_and_gathered(image_views_i2t)
    texts_i2t = texts_t2i if same_i2t else local_and_gathered(text_views_i2t)

    shares = []
    for text_view in range(len(text_views)):
        for image_view in range(len(image_views)):
            if text_view == 0 and image_view == 0:
                continue
            shares.append(symmetric_contrastive_share(
                images_i2t[image_view][0], texts_i2t[text_view][1],
                texts_t2i[text_view][0], images_t2i[image_view][1],
                positive_index, rows.global_batch_size, scale, decoupled=decoupled,
            ))
    return sum_shares_over_ranks(torch.stack(shares).mean())
