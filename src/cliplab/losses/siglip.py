"""The SigLIP (pairwise sigmoid) loss, open_clip-compatible, exact across processes.

For a global batch of G pairs, logits z_ij = s * <I_i, T_j> + b and signs y_ij = +1 if i == j else -1:

    L = -(1 / G) * sum_ij log sigmoid(y_ij * z_ij)

(open_clip divides by the local batch size.) With N processes, rank r holds B_r images and texts
and sums the terms of its own images against every text: its own texts first (positives on the
diagonal), then every other rank's texts (negatives only), which travel by one of four schemes
(`dist_impl`): "bidir" (texts pass both ways round the ring, half the steps), "shift" (one way),
"reduce" (one all-reduce per rank's texts), "gather" (one all-gather of all texts). Rank r divides
its sum by G / N, so the ranks' losses average to L even with unequal local batches (with equal
ones that is open_clip's B).

Gradients: every text's gradient flows back to its owner through the exchange, so each rank's
features receive N * dL/dx_r, and DistributedDataParallel's 1/N average gives exactly the
one-process gradient; the scale and bias gradients average to dL/ds and dL/db.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from cliplab.distributed.collectives import all_gather_with_grad, all_reduce_sum_with_grad, row_offsets
from cliplab.distributed.neighbour import neighbour_exchange_bidir_with_grad, neighbour_exchange_with_grad
from cliplab.losses.clip import fp32_region
from cliplab.losses.common import (
    DEFAULT_MAX_LOGIT_SCALE,
    DEFAULT_NORMALIZE_EPS,
    ContrastiveMetrics,
    as_scalar_tensor,
    check_feature_pair,
    clamp_logit_scale,
    loss_result,
    to_fp32_features,
    validate_max_logit_scale,
)
from cliplab.losses.gather import LossWorld
from cliplab.losses.siglip_exchanges import SIGLIP_DIST_IMPLS


@dataclass(frozen=True, kw_only=True)
class SigLipLossConfig:
    cache_labels: bool = False
    rank: int = 0
    world_size: int = 1
    dist_impl: str | None = None
    max_logit_scale: float | None = DEFAULT_MAX_LOGIT_SCALE
    normalize: bool = False
    normalize_eps: float = DEFAULT_NORMALIZE_EPS

    def __post_init__(self) -> None:
        for name in ("cache_labels", "normalize"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.dist_impl is not None and self.dist_impl not in SIGLIP_DIST_IMPLS:
            raise ValueError(f"dist_impl must be one of {SIGLIP_DIST_IMPLS} or None, got {self.dist_impl!r}")
        validate_max_logit_scale(self.max_logit_scale)
        if not (isinstance(self.normalize_eps, (int, float)) and self.normalize_eps > 0):
            raise ValueError(f"normalize_eps must be a positive number, got {self.normalize_eps!r}")
        self.world  # validates rank and world_size

    @property
    def resolved_dist_impl(self) -> str:
        return self.dist_impl or "bidir"

    @property
    def world(self) -> LossWorld:
        return LossWorld(rank=self.rank, world_size=self.world_size)


def siglip_logits(image_features: torch.Tensor, text_features: torch.Tensor,
                  logit_scale: torch.Tensor, logit_bias: torch.Tensor) -> torch.Tensor:
    """[Bi, D], [Bt, D], 0-d, 0-d -> [Bi, Bt]: s * I @ T.T + b."""
    return logit_scale * image_features @ text_features.T + logit_bias


def siglip_block_loss_sum(logits: torch.Tensor, positive_signs: torch.Tensor | None) -> torch.Tensor:
    """[Bi, Bt] logits -> 0-d: sum of -log sigmoid(y * z).

    positive_signs: [Bi, Bt] of +1 on the positives and -1 elsewhere, or None for a block of
    negatives only (other ranks' texts).
    """
    if positive_signs is None:
        return -F.logsigmoid(-logits).sum()
    return -F.logsigmoid(positive_signs * logits).sum()


class _SigLipHitCounter:
    """Top-1 hits over the global batch, from the blocks of logits already computed.

    An image counts as right when its positive scores above every negative among all G texts; a
    text likewise among all G images. Per-text maxima over images are combined across ranks by one
    max all-reduce, the image hits by one sum.
    """

    def __init__(self, local_rows: int, global_rows: int, first_row: int, device: torch.device) -> None:
        self.first_row = first_row
        self.image_positive = torch.full((local_rows,), float("-inf"), device=device)
        self.image_best_negative = torch.full((local_rows,), float("-inf"), device=device)
        # [0]: best negative image score of each global text, [1]: its positive score.
        self.text_scores = torch.full((2, global_rows), float("-inf"), device=device)

    @torch.no_grad()
    def add_block(self, logits: torch.Tensor, first_text: int, is_own_block: bool) -> None:
        logits = logits.detach()
        text_columns = slice(first_text, first_text + logits.shape[1])
        if is_own_block:
            diagonal = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
            self.image_positive = logits.diagonal().clone()
            self.text_scores[1, text_columns] = logits.diagonal()
            logits = logits.masked_fill(diagonal, float("-inf"))
        if logits.shape[1] > 0:
            self.image_best_negative = torch.maximum(self.image_best_negative, logits.max(dim=1).values)
        if logits.shape[0] > 0:
            self.text_scores[0, text_columns] = torch.maximum(self.text_scores[0, text_columns],
                                                              logits.max(dim=0).values)

    def metrics(self, world: LossWorld, logit_scale: torch.Tensor) -> ContrastiveMetrics:
        global_rows = self.text_scores.shape[1]
        image_hits = (self.image_positive > self.image_best_negative).sum().float().reshape(1)
        image_hits = world.sum_no_grad(image_hits)[0]
        text_scores = world.max_no_grad(self.text_scores)
        text_hits = (text_scores[1] > text_scores[0]).sum().float()
        return ContrastiveMetrics(i2t_accuracy=image_hits / global_rows, t2i_accuracy=text_hits / global_rows,
                                  logit_scale=logit_scale.detach(), local_batch_size=self.image_positive.shape[0],
                                  global_batch_size=global_rows)


class SigLipFamilyLoss(nn.Module):
    """open_clip's SigLipLoss constructor, shared by SigLipLoss and TiledSigLipLoss.

    The arguments (open_clip's, then cliplab's keyword-only max_logit_scale, normalize,
    normalize_eps) become `config` (a validated SigLipLossConfig) and `world` (this rank's place).
    """

    def __init__(
        self,
        cache_labels: bool = False,
        rank: int = 0,
        world_size: int = 1,
        dist_impl: str | None = None,
        *,
        max_logit_scale: float | None = DEFAULT_MAX_LOGIT_SCALE,
        normalize: bool = False,
        normalize_eps: float = DEFAULT_NORMALIZE_EPS,
    ) -> None:
        super().__init__()
        self.config = SigLipLossConfig(cache_labels=cache_labels, rank=rank, world_size=world_size,
                                       dist_impl=dist_impl, max_logit_scale=max_logit_scale,
                                       normalize=normalize, normalize_eps=normalize_eps)
        self.world = self.config.world


class SigLipLoss(SigLipFamilyLoss):
    """open_clip's SigLipLoss with exact distributed semantics (see the module docstring).

    SigLipLoss(cache_labels=False, rank=0, world_size=1, dist_impl=None, *, max_logit_scale=100,
               normalize=False, normalize_eps=1e-6)
    forward(image_features [B, D], text_features [B, D], logit_scale (exp'd), logit_bias,
            output_dict=False, *, return_metrics=False)
      -> loss (0-d float32) or {"contrastive_loss": loss}; with return_metrics, (that, metrics).
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.dist_impl = self.config.resolved_dist_impl
        self._signs: dict[tuple[torch.device, int], torch.Tensor] = {}

    def _positive_signs(self, rows: int, device: torch.device) -> torch.Tensor:
        signs = self._signs.get((device, rows))
        if signs is None:
            signs = 2 * torch.eye(rows, device=device) - 1
            if self.config.cache_labels:
                self._signs[(device, rows)] = signs
        return signs

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor | float, logit_bias: torch.Tensor | float,
                output_dict: bool = False, *, return_metrics: bool = False):
        check_feature_pair(image_features, text_features)
        self.world.check_matches_process_group()
        with fp32_region(image_features):
            image_features = to_fp32_features(image_features, self.config.normalize, self.config.normalize_eps)
            text_features = to_fp32_features(text_features, self.config.normalize, self.config.normalize_eps)
            scale = clamp_logit_scale(logit_scale, self.config.max_logit_scale, image_features)
            bias = as_scalar_tensor(logit_bias, "logit_bias", image_features)
            batch_sizes = self.world.batch_sizes(image_features.shape[0], image_features.device)
            offsets = row_offsets(batch_sizes)
            counter = None
            if return_metrics:
                counter = _SigLipHitCounter(image_features.shape[0], sum(batch_sizes),
                                            offsets[self.world.rank], image_features.device)

            def block_loss(texts: torch.Tensor, text_rank: int) -> torch.Tensor:
                logits = siglip_logits(image_features, texts, scale, bias)
                own = text_rank == self.world.rank
                if counter is not None:
                    counter.add_block(logits, offsets[text_rank], own)
                signs = self._positive_signs(texts.shape[0], texts.device) if own else None
                return siglip_block_loss_sum(logits, signs)

            loss_sum = block_loss(text_features, self.world.rank)
            if self.world.is_distributed:
                loss_sum = loss_sum + self._other_ranks_loss_sum(text_features, batch_sizes, block_loss)
            loss = loss_sum / (sum(batch_sizes) / self.world.world_size)
        return loss_result({"contrastive_loss": loss}, output_dict,
                           counter.metrics(self.world, scale) if return_metrics else None)

    def _other_ranks_loss_sum(self, text_features, batch_sizes, block_loss) -> torch.Tensor:
        rank, world_size = self.world.rank, self.world.world_size
        left, right = (rank - 1) % world_size, (rank + 1) % world_size
        total = text_features.new_zeros(())
        if self.dist_impl == "gather":
            all_text = all_gather_with_grad(text_features, batch_sizes=batch_sizes)
            offsets = row_offsets(batch_sizes)
            for other in range(world_size):
                if other != rank:
                    total = total + block_loss(all_text[offsets[other]:offsets[other] + batch_sizes[other]], other)
        elif self.dist_impl == "reduce":
            max_rows = max(batch_sizes)
            padded = F.pad(text_features, (0, 0, 0, max_rows - text_features.shape[0]))
            for source in range(world_size):
                # Every rank takes part in each reduction, its own included: that one broadcasts
                # this rank's texts to the others.
                texts = all_reduce_sum_with_grad(padded * float(source == rank))[:batch_sizes[source]]
                if source != rank:
                    total = total + block_loss(texts, source)
                else:
                    # The other ranks run this reduction's backward; a zero-weight term keeps it in
                    # this rank's graph too, or the backward all-reduces would pair up wrongly.
                    total = total + 0.0 * texts.sum()
        elif self.dist_impl == "shift":
            to_right = text_features
            for step in range(1, world_size):
                source = (rank - step) % world_size
                to_right = neighbour_exchange_with_grad(left, right, to_right, recv_rows=batch_sizes[source])
                total = total + block_loss(to_right, source)
        else:
            to_left = to_right = text_features
            bidirectional_steps, one_more = divmod(world_size - 1, 2)
            for step in range(1, bidirectional_steps + 1):
                source_right, source_left = (rank + step) % world_size, (rank - step) % world_size
                to_left, to_right = neighbour_exchange_bidir_with_grad(
                    left, right, to_left, to_right, recv_rows_from_right=batch_sizes[source_right],
                    recv_rows_from_left=batch_sizes[source_left])
                total = total + block_loss(to_left, source_right) + block_loss(to_right, source_left)
            if one_more:
                source = (rank - bidirectional_steps - 1) % world_size
                received = neighbour_exchange_with_grad(left, right, to_right, recv_rows=batch_sizes[source])
                total = total + block_loss(received, source)
        return total
