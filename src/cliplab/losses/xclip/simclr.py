"""SimCLR's NT-Xent (arXiv 2002.05709) over the views of all processes.

With 2G normalised embeddings (view 1 and view 2 of G images, all ranks), each embedding a is an
anchor whose positive is the other view of the same image, against all 2G - 2 other embeddings:

    l_a  = logsumexp_{k != a} (<e_a, e_k> / tau) - <e_a, e_pos(a)> / tau
    loss = (1 / 2G) sum_a l_a

Each rank scores its own 2B anchors against the gathered 2G columns (cross-rank negatives), and the
shares are summed over ranks (gradient convention in `cliplab.losses.xclip.global_batch`).
"""

from __future__ import annotations

import math

import torch

from cliplab.losses.common import to_fp32_features
from cliplab.losses.xclip.global_batch import gather_columns, locate_rows, sum_shares_over_ranks


def nt_xent_share(
    view_1_rows: torch.Tensor,
    view_2_rows: torch.Tensor,
    view_1_columns: torch.Tensor,
    view_2_columns: torch.Tensor,
    positive_index: torch.Tensor,
    global_batch_size: int,
    temperature: float,
) -> torch.Tensor:
    """This rank's share of NT-Xent.

    view_k_rows: [R, D] this rank's normalised embeddings of view k; view_k_columns: [G, D] every
    rank's; positive_index: [R] long, global index of each local image. Returns 0-d fp32: the sum of
    this rank's 2R anchor losses divided by 2G.
    """
    anchors = torch.cat([view_1_rows, view_2_rows], dim=0)  # [2R, D]
    columns = torch.cat([view_1_columns, view_2_columns], dim=0)  # [2G, D]
    logits = anchors @ columns.T / temperature  # [2R, 2G]
    self_index = torch.cat([positive_index, positive_index + global_batch_size])
    other_view_index = torch.cat([positive_index + global_batch_size, positive_index])
    positive_logits = logits.gather(1, other_view_index[:, None]).squeeze(1)
    is_self = torch.zeros_like(logits, dtype=torch.bool)
    is_self.scatter_(1, self_index[:, None], True)
    anchor_losses = torch.logsumexp(logits.masked_fill(is_self, float("-inf")), dim=1) - positive_logits
    return anchor_losses.sum() / (2 * global_batch_size)


def simclr_loss(
    view_1_embeddings: torch.Tensor,
    view_2_embeddings: torch.Tensor,
    *,
    temperature: float = 0.1,
    normalize_eps: float = 1e-6,
) -> torch.Tensor:
    """NT-Xent over the global batch; view_k_embeddings: [B, D] float (normalised here). 0-d fp32."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    for name, embeddings in (("view_1_embeddings", view_1_embeddings), ("view_2_embeddings", view_2_embeddings)):
        if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2 or not embeddings.is_floating_point():
            raise ValueError(f"{name} must be a 2-D float tensor [batch, dim]")
    if view_1_embeddings.shape != view_2_embeddings.shape or view_1_embeddings.shape[0] == 0:
        raise ValueError(
            f"view_1_embeddings and view_2_embeddings must have one non-empty shape, got "
            f"{tuple(view_1_embeddings.shape)} and {tuple(view_2_embeddings.shape)}"
        )
    view_1 = to_fp32_features(view_1_embeddings, normalize=True, eps=normalize_eps)
    view_2 = to_fp32_features(view_2_embeddings, normalize=True, eps=normalize_eps)
    rows = locate_rows(view_1.shape[0], view_1.device)
    share = nt_xent_share(
        view_1, view_2, gather_columns(view_1, rows), gather_columns(view_2, rows),
        rows.positive_index(view_1.shape[0], view_1.device), rows.global_batch_size, float(temperature),
    )
    return sum_shares_over_ranks(share)
