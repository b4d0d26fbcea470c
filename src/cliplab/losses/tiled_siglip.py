"""The SigLIP (pairwise sigmoid) loss computed tile by tile: SigLipLoss's value and gradients
without holding the [B_r, G] logits (G = global batch) unless a memory budget allows it.

With X = s * I @ T.T + b and y = +1 on the diagonal, -1 elsewhere, rank r's loss is

    L_r = sum_{i in rank r, all j} -log sigmoid(y_ij X_ij) / (G / N)
        = ( sum_ij softplus(X_ij) - sum_i X_ii ) / (G / N)

(open_clip divides by the local batch; G / N is that when local batches are equal, and the ranks'
losses average to the global loss otherwise too). Its logits' gradient is
(sigmoid(X) - eye) / (G / N). Forward: one matmul and one softplus per tile. Backward: the tile
is recomputed (one matmul), or taken from memory when this rank's [B_r, G] logits fit in
`keep_tiles_max_bytes`; then dI += dX @ T, dT += dX.T @ (s * I), ds and db from the same
products (the bias rides in the matmuls as an extra feature column). Memory beyond inputs and gradients: O(B_r x tile).

Across N processes the text shards travel round the ring (`cliplab.distributed.ring`); in
backward they travel again with their gradient accumulators, which arrive home. As with SigLipLoss
(every `dist_impl`), each rank's features receive sum_k dL_k/dx_r, so DistributedDataParallel's
average is exactly the one-process gradient; scale and bias gradients are rank r's own dL_r/ds,
dL_r/db. `dist_impl` is accepted for compatibility; the ring is always used.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cliplab.distributed.ring import Ring, ring_shards
from cliplab.losses.clip import fp32_region
from cliplab.losses.common import as_scalar_tensor, loss_result
from cliplab.losses.siglip import SigLipFamilyLoss
from cliplab.losses.tiled_clip import (
    DEFAULT_KEEP_TILES_MAX_BYTES,
    DEFAULT_TILE_SIZE,
    _all_reduce_sum,
    metrics_from_hits,
    tiled_inputs,
    validate_tiling,
)
from cliplab.losses.tiling import Workspace, diagonal_of_tile, sigmoid_tile_grad_, sigmoid_tile_loss_sum, tile_bounds


@dataclass(frozen=True)
class SigmoidTilePlan:
    """How one call walks the logits. batch_sizes: every rank's rows, in rank order."""

    ring: Ring
    batch_sizes: tuple[int, ...]
    tile_size: int
    keep_tiles: bool
    want_metrics: bool


class TiledSigLipFunction(torch.autograd.Function):
    """(image [B_r, D], text [B_r, D], scale 0-d, bias 0-d, plan) -> (loss 0-d, hits [2]).

    hits: global counts of images whose positive scores above all their negatives, and of texts
    likewise (SigLipLoss's accuracy); zeros unless plan.want_metrics; not differentiable.
    """

    @staticmethod
    def forward(ctx, image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor,
                plan: SigmoidTilePlan):
        ring, tile = plan.ring, plan.tile_size
        rank, world_size = ring.rank, ring.world_size
        rows = image.shape[0]
        image_scaled, text_augmented = _augment_with_bias(image, text, scale, bias)
        workspace = Workspace(image)
        loss_sum = image.new_zeros(())
        positives = image.new_full((rows,), float("-inf"))
        row_best_negative = image.new_full((rows,), float("-inf"))
        kept = {} if plan.keep_tiles else None
        pending = None
        for step, source, (text_shard,) in ring_shards(ring, [text_augmented], plan.batch_sizes):
            col_best_negative = image.new_full((text_shard.shape[0],), float("-inf"))
            for r0, r1 in tile_bounds(rows, tile):
                for c0, c1 in tile_bounds(text_shard.shape[0], tile):
                    if kept is not None:
                        logits = image.new_empty((r1 - r0, c1 - c0))
                    else:
                        logits = workspace.matrix("logits", r1 - r0, c1 - c0)
                    torch.mm(image_scaled[r0:r1], text_shard[c0:c1].T, out=logits)
                    loss_sum += sigmoid_tile_loss_sum(logits, workspace.matrix("softplus", r1 - r0, c1 - c0))
                    diagonal = diagonal_of_tile(logits, r0, c0) if source == rank else None
                    if diagonal is not None:
                        loss_sum -= diagonal.sum()
                    if plan.want_metrics:
                        _track_best_negatives(logits, diagonal, r0, c0, positives, row_best_negative,
                                              col_best_negative)
                    if kept is not None:
                        kept[(step, r0, c0)] = logits
            if plan.want_metrics:
                if pending is not None:
                    col_best_negative = torch.maximum(pending.wait()[0], col_best_negative)
                pending = ring.shift([col_best_negative], plan.batch_sizes[ring.source_rank(step + 1)])

        loss = loss_sum / (sum(plan.batch_sizes) / world_size)
        hits = image.new_zeros(2)
        if plan.want_metrics:
            own_col_best_negative = pending.wait()[0]
            hits[0] = (positives > row_best_negative).sum()
            hits[1] = (positives > own_col_best_negative).sum()
            _all_reduce_sum(hits, ring)
        ctx.plan = plan
        ctx.kept = kept
        ctx.save_for_backward(image, text, scale, bias)
        ctx.mark_non_differentiable(hits)
        return loss, hits

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: torch.Tensor, _grad_hits: torch.Tensor):
        image, text, scale, bias = ctx.saved_tensors
        plan: SigmoidTilePlan = ctx.plan
        kept, ctx.kept = ctx.kept, None  # consumed in place: a second backward recomputes
        ring, tile = plan.ring, plan.tile_size
        rank, world_size = ring.rank, ring.world_size
        # d L_r / d X = (sigmoid(X) - eye) * weight; the weight is applied to the [B, D] products.
        weight = grad_loss.to(image.dtype) * world_size / sum(plan.batch_sizes)
        image_scaled, text_augmented = _augment_with_bias(image, text, scale, bias)
        workspace = Workspace(image)
        # Column D of dX @ [T, 1] holds dX's row sums, whose total is the bias gradient.
        grad_image_and_bias = image.new_zeros((image.shape[0], augmented_width(image.shape[1])))
        pending = None
        for step, source, (text_shard,) in ring_shards(ring, [text_augmented], plan.batch_sizes):
            grad_text_part = torch.zeros_like(text_shard)
            for r0, r1 in tile_bounds(image.shape[0], tile):
                for c0, c1 in tile_bounds(text_shard.shape[0], tile):
                    logits = kept.pop((step, r0, c0)) if kept is not None else None
                    if logits is None:
                        logits = workspace.matrix("logits", r1 - r0, c1 - c0)
                        torch.mm(image_scaled[r0:r1], text_shard[c0:c1].T, out=logits)
                    grad_tile = sigmoid_tile_grad_(logits)
                    if source == rank:
                        diagonal_of_tile(grad_tile, r0, c0).sub_(1)
                    grad_image_and_bias[r0:r1].addmm_(grad_tile, text_shard[c0:c1])
                    grad_text_part[c0:c1].addmm_(grad_tile.T, image_scaled[r0:r1])
            grad_text_part.mul_(weight)
            if pending is not None:
                grad_text_part += pending.wait()[0]
            pending = ring.shift([grad_text_part], plan.batch_sizes[ring.source_rank(step + 1)])
        feature_dim = image.shape[1]
        grad_text = pending.wait()[0][:, :feature_dim]
        grad_image_unweighted = grad_image_and_bias[:, :feature_dim]
        grad_scale = weight * torch.vdot(image.reshape(-1), grad_image_unweighted.reshape(-1))
        grad_bias = weight * grad_image_and_bias[:, feature_dim].sum()
        grad_image = grad_image_unweighted.mul_(weight * scale)
        return grad_image, grad_text, grad_scale.reshape(scale.shape), grad_bias.reshape(bias.shape), None


# Matmul operands of width D + 1 = 513 ran about 30% slower than of width 512 or 520 on this
# machine's BLAS (benchmarks/matmul_width.py); zero columns up to a multiple of 8 change no
# product and keep the fast path.
MATMUL_WIDTH_MULTIPLE = 8


def augmented_width(feature_dim: int) -> int:
    """D + 1 (the bias column) rounded up to a multiple of MATMUL_WIDTH_MULTIPLE."""
    return -(-(feature_dim + 1) // MATMUL_WIDTH_MULTIPLE) * MATMUL_WIDTH_MULTIPLE


def _augment_with_bias(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor,
                       bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """([B, D], [B', D]) -> ([s * I, b, 0...] [B, W], [T, 1, 0...] [B', W]), W = augmented_width(D):
    their product is s * I @ T.T + b.

    The bias rides in the matmul, so no [B, B'] pass adds it, and in backward the same column
    turns dX @ [T, 1] into (dX @ T, row sums of dX) at no extra pass.
    """
    feature_dim, width = image.shape[1], augmented_width(image.shape[1])
    image_scaled = image.new_zeros((image.shape[0], width))
    torch.mul(image, scale, out=image_scaled[:, :feature_dim])
    image_scaled[:, feature_dim] = bias
    text_augmented = text.new_zeros((text.shape[0], width))
    text_augmented[:, :feature_dim] = text
    text_augmented[:, feature_dim] = 1
    return image_scaled, text_augmented


def _track_best_negatives(logits: torch.Tensor, diagonal: torch.Tensor | None, r0: int, c0: int,
                          positives: torch.Tensor, row_best_negative: torch.Tensor,
                          col_best_negative: torch.Tensor) -> None:
    """Update the running best negative score of each row and column of `logits` [R, C].

    The positives on `diagonal` (a view into logits, or None) are recorded, then masked to -inf
    while taking the maxima, then put back.
    """
    saved_positives = None
    if diagonal is not None and diagonal.numel() > 0:
        first = max(r0, c0) - r0
        saved_positives = diagonal.clone()
        positives[r0 + first:r0 + first + diagonal.numel()] = saved_positives
        diagonal.fill_(float("-inf"))
    rows, cols = logits.shape
    row_best_negative[r0:r0 + rows] = torch.maximum(row_best_negative[r0:r0 + rows], logits.amax(dim=1))
    col_best_negative[c0:c0 + cols] = torch.maximum(col_best_negative[c0:c0 + cols], logits.amax(dim=0))
    if saved_positives is not None:
        diagonal.copy_(saved_positives)


def tiled_siglip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                      logit_bias: torch.Tensor, plan: SigmoidTilePlan) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [B_r, D], scale and bias 0-d, all in one float dtype -> (loss 0-d, global hits [2])."""
    return TiledSigLipFunction.apply(image_features, text_features, logit_scale, logit_bias, plan)


class TiledSigLipLoss(SigLipFamilyLoss):
    """SigLipLoss's interface and results, computed in tiles (see the module docstring).

    TiledSigLipLoss(SigLipLoss's arguments, *, tile_size=DEFAULT_TILE_SIZE,
                    keep_tiles_max_bytes=DEFAULT_KEEP_TILES_MAX_BYTES)
    forward(image_features [B, D], text_features [B, D], logit_scale (exp'd), logit_bias,
            output_dict=False, *, return_metrics=False)
      -> loss (0-d float32; float64 for float64 inputs) or {"contrastive_loss": loss}; with
         return_metrics, (that, ContrastiveMetrics).

    tile_size: rows and columns per tile. keep_tiles_max_bytes: when this rank's [B_r, G] logits
    fit, forward keeps them for backward instead of recomputing them.
    """

    def __init__(self, *siglip_loss_arguments, tile_size: int = DEFAULT_TILE_SIZE,
                 keep_tiles_max_bytes: int = DEFAULT_KEEP_TILES_MAX_BYTES, **siglip_loss_options) -> None:
        super().__init__(*siglip_loss_arguments, **siglip_loss_options)
        validate_tiling(tile_size, keep_tiles_max_bytes)
        self.tile_size = tile_size
        self.keep_tiles_max_bytes = keep_tiles_max_bytes

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor | float, logit_bias: torch.Tensor | float,
                output_dict: bool = False, *, return_metrics: bool = False):
        with fp32_region(image_features):
            image, text, scale, batch_sizes = tiled_inputs(image_features, text_features, logit_scale, self.config,
                                                           self.world)
            bias = as_scalar_tensor(logit_bias, "logit_bias", image).to(image.dtype)
            global_rows = sum(batch_sizes)
            kept_bytes = image.shape[0] * global_rows * image.element_size()
            plan = SigmoidTilePlan(ring=Ring(), batch_sizes=batch_sizes, tile_size=self.tile_size,
                                   keep_tiles=kept_bytes <= self.keep_tiles_max_bytes,
                                   want_metrics=return_metrics)
            loss, hits = tiled_siglip_loss(image, text, scale, bias, plan)
        return loss_result({"contrastive_loss": loss}, output_dict,
                           metrics_from_hits(hits, scale, image.shape[0], global_rows) if return_metrics else None)
