"""The CLIP (InfoNCE) loss computed tile by tile: the same value and gradients as ClipLoss, without
ever holding the [G, G] logits (G = global batch) unless a memory budget allows it.

    L = ( CE(s * I @ T.T, arange(G)) + CE(s * T @ I.T, arange(G)) ) / 2
      = ( sum_i rowLSE_i + sum_j colLSE_j - 2 * sum_i X_ii ) / (2G),   X = s * I @ T.T

Forward: one matmul per [tile, tile] tile of X; from it the row and column LSEs are merged into
running [G]-vectors (see `tiling`). Backward: with the LSEs saved, the logits' gradient is
(P_row + P_col) / (2G) - eye / G tile by tile; each tile is recomputed (one matmul), or taken from
memory when the whole [B_r, G] block fits in `keep_tiles_max_bytes`, and gives dI += dX @ T and
dT += dX.T @ (s * I). Memory beyond inputs and gradients: O(B_r x tile) plus O(G) statistics.

Across N processes rank r keeps its images; the text shards travel round the ring
(`cliplab.distributed.ring`), each with its column LSEs, which every rank updates before passing
the shard on and which arrive home after N steps. In backward the shards travel again with their
gradient accumulators, which also arrive home. No rank holds another rank's features with a
gradient history. Gradients match ClipLoss option for option (see its module docstring):

| local_loss | gather_with_grad | loss on rank r | feature grad on rank r   | logit-scale grad on rank r |
|------------|------------------|----------------|--------------------------|----------------------------|
| False      | True             | L              | N * dL/dx_r (sum_k g_k)  | dL/ds                      |
| False      | False            | L              | dL/dx_r                  | dL/ds                      |
| True       | True             | L_r            | sum_k dL_k/dx_r          | dL_r/ds                    |
| True       | False            | L_r            | dL_r/dx_r, gathers const | dL_r/ds                    |

(with unit upstream gradients; L_r divides its rows' sum by G / N, so mean_r L_r = L; in the last
row, as in open_clip, L_r reaches rank r's images through its rows only and its texts through its
columns only). Under
DistributedDataParallel's averaging, gather_with_grad=True gives exactly the one-process gradient.
The local-loss rows cost more in backward (P_row and P_col kept apart: two more matmuls per tile
from other ranks, and no kept tiles), since each part belongs to a different rank's loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from cliplab.distributed.collectives import row_offsets
from cliplab.distributed.ring import Ring, ring_shards
from cliplab.losses.clip import ClipFamilyLoss, ClipLossConfig, fp32_region
from cliplab.losses.common import ContrastiveMetrics, check_feature_pair, clamp_logit_scale, loss_result
from cliplab.losses.gather import LossWorld
from cliplab.losses.siglip import SigLipLossConfig
from cliplab.losses.tiling import (
    Workspace,
    column_lse_direct,
    diagonal_of_tile,
    merge_best,
    merge_lse,
    softmax_pair_grad_direct,
    softmax_pair_grad_from_exp_,
    softmax_parts_direct,
    softmax_tile_stats_,
    tile_bounds,
)

DEFAULT_TILE_SIZE = 4096
DEFAULT_KEEP_TILES_MAX_BYTES = 512 * 2**20


@dataclass(frozen=True)
class TilePlan:
    """How one call walks the logits. batch_sizes: every rank's rows, in rank order.

    local_rows_loss: each rank's loss is its own rows' and columns' share (ClipLoss local_loss in a
    world of more than one). gradients_from_all_ranks: a rank's features get every rank's loss's
    gradient (gather_with_grad). keep_tiles: keep the exp'd tiles from forward for backward.
    """

    ring: Ring
    batch_sizes: tuple[int, ...]
    tile_size: int
    keep_tiles: bool
    local_rows_loss: bool
    gradients_from_all_ranks: bool
    want_metrics: bool


def validate_tiling(tile_size: int, keep_tiles_max_bytes: int) -> None:
    if not isinstance(tile_size, int) or isinstance(tile_size, bool) or tile_size < 1:
        raise ValueError(f"tile_size must be a positive int, got {tile_size!r}")
    if (not isinstance(keep_tiles_max_bytes, int) or isinstance(keep_tiles_max_bytes, bool)
            or keep_tiles_max_bytes < 0):
        raise ValueError(f"keep_tiles_max_bytes must be an int >= 0, got {keep_tiles_max_bytes!r}")


def _all_reduce_sum(tensor: torch.Tensor, ring: Ring) -> torch.Tensor:
    if ring.world_size > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=ring.group)
    return tensor


class TiledClipFunction(torch.autograd.Function):
    """(image [B_r, D], text [B_r, D], scale 0-d, plan) -> (loss 0-d, hits [2]) in the inputs' dtype.

    hits: global counts of images whose best text is their own and the reverse (zeros unless
    plan.want_metrics); not differentiable.
    """

    @staticmethod
    def forward(ctx, image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor, plan: TilePlan):
        ring, tile = plan.ring, plan.tile_size
        rank, world_size = ring.rank, ring.world_size
        offsets = row_offsets(list(plan.batch_sizes))
        global_rows, first_row = sum(plan.batch_sizes), offsets[rank]
        rows = image.shape[0]
        image_scaled = image * scale
        workspace = Workspace(image)
        row_lse = image.new_full((rows,), float("-inf"))
        row_max = image.new_full((rows,), float("-inf"))
        row_best = image.new_full((rows,), float("-inf"))
        row_best_index = torch.zeros(rows, dtype=torch.long, device=image.device)
        diagonal_sum = image.new_zeros(())
        kept = {} if plan.keep_tiles else None
        pending = None
        for step, source, (text_shard,) in ring_shards(ring, [text], plan.batch_sizes):
            cols = text_shard.shape[0]
            col_lse = image.new_full((cols,), float("-inf"))
            col_best = image.new_full((cols,), float("-inf"))
            col_best_index = torch.zeros(cols, dtype=torch.long, device=image.device)
            for r0, r1 in tile_bounds(rows, tile):
                for c0, c1 in tile_bounds(cols, tile):
                    if kept is not None:
                        logits = image.new_empty((r1 - r0, c1 - c0))
                    else:
                        logits = workspace.matrix("logits", r1 - r0, c1 - c0)
                    torch.mm(image_scaled[r0:r1], text_shard[c0:c1].T, out=logits)
                    if source == rank:
                        diagonal_sum += diagonal_of_tile(logits, r0, c0).sum()
                    if plan.want_metrics:
                        values, indices = logits.max(dim=1)
                        row_best[r0:r1], row_best_index[r0:r1] = merge_best(
                            row_best[r0:r1], row_best_index[r0:r1], values, indices + offsets[source] + c0)
                        values, indices = logits.max(dim=0)
                        col_best[c0:c1], col_best_index[c0:c1] = merge_best(
                            col_best[c0:c1], col_best_index[c0:c1], values, indices + first_row + r0)
                    tile_row_max, tile_row_lse, tile_col_lse = softmax_tile_stats_(logits)
                    if tile_col_lse is None:
                        recomputed = workspace.matrix("recomputed", r1 - r0, c1 - c0)
                        torch.mm(image_scaled[r0:r1], text_shard[c0:c1].T, out=recomputed)
                        tile_col_lse = column_lse_direct(recomputed)
                    row_lse[r0:r1] = merge_lse(row_lse[r0:r1], tile_row_lse)
                    row_max[r0:r1] = torch.maximum(row_max[r0:r1], tile_row_max)
                    col_lse[c0:c1] = merge_lse(col_lse[c0:c1], tile_col_lse)
                    if kept is not None:
                        kept[(step, r0, c0)] = (logits, tile_row_max)
            travelling = [col_lse, col_best, col_best_index] if plan.want_metrics else [col_lse]
            if pending is not None:
                received = pending.wait()
                travelling[0] = merge_lse(received[0], col_lse)
                if plan.want_metrics:
                    travelling[1], travelling[2] = merge_best(received[1], received[2], col_best, col_best_index)
            pending = ring.shift(travelling, plan.batch_sizes[ring.source_rank(step + 1)])
        own_columns = pending.wait()
        own_col_lse = own_columns[0]

        partial = row_lse.sum() + own_col_lse.sum() - 2 * diagonal_sum
        own_labels = torch.arange(first_row, first_row + rows, device=image.device)
        hits = image.new_zeros(2)
        if plan.want_metrics:
            hits[0] = (row_best_index == own_labels).sum()
            hits[1] = (own_columns[2] == own_labels).sum()
        if plan.local_rows_loss:
            loss = partial / (2 * global_rows / world_size)
            if plan.want_metrics:
                _all_reduce_sum(hits, ring)
        else:
            totals = _all_reduce_sum(torch.cat([partial.reshape(1), hits]), ring)
            loss, hits = totals[0] / (2 * global_rows), totals[1:].clone()
        ctx.plan = plan
        ctx.kept = kept
        ctx.save_for_backward(image, text, scale, row_lse, row_max, own_col_lse)
        ctx.mark_non_differentiable(hits)
        return loss, hits

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_loss: torch.Tensor, _grad_hits: torch.Tensor):
        image, text, scale, row_lse, row_max, own_col_lse = ctx.saved_tensors
        plan: TilePlan = ctx.plan
        kept, ctx.kept = ctx.kept, None  # consumed in place: a second backward recomputes
        ring, tile = plan.ring, plan.tile_size
        rank, world_size = ring.rank, ring.world_size
        global_rows = sum(plan.batch_sizes)
        grad_loss = grad_loss.to(image.dtype)
        image_scaled = image * scale
        workspace = Workspace(image)
        split_rows = plan.local_rows_loss
        if split_rows:
            own_weight = grad_loss * world_size / (2 * global_rows)
        else:
            own_weight = image.new_tensor(1.0 / (2 * global_rows))
        grad_image_unscaled = torch.zeros_like(image)
        own_scale_grad = image.new_zeros(())
        pending = None
        payload = [text, own_col_lse, own_weight.reshape(1)]
        for step, source, (text_shard, shard_col_lse, shard_weight) in ring_shards(ring, payload, plan.batch_sizes):
            col_weight = shard_weight[0]
            own_shard = source == rank
            grad_text_part = torch.zeros_like(text_shard)
            travelling_scale_grad = image.new_zeros(())
            for r0, r1 in tile_bounds(image.shape[0], tile):
                for c0, c1 in tile_bounds(text_shard.shape[0], tile):
                    image_rows, image_scaled_rows = image[r0:r1], image_scaled[r0:r1]
                    text_cols = text_shard[c0:c1]
                    if split_rows and not (own_shard and plan.gradients_from_all_ranks):
                        # The row part belongs to this rank's loss, the column part to the shard
                        # owner's; each gets its own logit-scale gradient. Without
                        # gather_with_grad (open_clip) a rank's loss reaches its images only
                        # through its rows and its texts only through its columns, own block too.
                        logits = workspace.matrix("logits", r1 - r0, c1 - c0)
                        torch.mm(image_scaled_rows, text_cols.T, out=logits)
                        row_part, col_part = softmax_parts_direct(logits, row_lse[r0:r1], shard_col_lse[c0:c1],
                                                                  own_weight, col_weight)
                        if own_shard:
                            diagonal_of_tile(row_part, r0, c0).sub_(own_weight)
                            diagonal_of_tile(col_part, r0, c0).sub_(col_weight)
                        to_images = row_part @ text_cols
                        own_scale_grad += (image_rows * to_images).sum()
                        grad_image_unscaled[r0:r1] += to_images
                        to_texts = col_part.T @ image_rows
                        travelling_scale_grad += (text_cols * to_texts).sum()
                        grad_text_part[c0:c1].add_(to_texts * scale)
                        if plan.gradients_from_all_ranks:
                            grad_image_unscaled[r0:r1].addmm_(col_part, text_cols)
                            grad_text_part[c0:c1].addmm_(row_part.T, image_scaled_rows)
                        continue
                    entry = kept.pop((step, r0, c0)) if kept is not None else None
                    if entry is not None:
                        exp_tile, row_shift = entry
                    else:
                        exp_tile = workspace.matrix("logits", r1 - r0, c1 - c0)
                        torch.mm(image_scaled_rows, text_cols.T, out=exp_tile)
                        row_shift = row_max[r0:r1]
                        exp_tile.sub_(row_shift[:, None]).exp_()
                    grad_tile = softmax_pair_grad_from_exp_(
                        exp_tile, row_shift, row_lse[r0:r1], shard_col_lse[c0:c1], own_weight, col_weight,
                        workspace.matrix("factors", r1 - r0, c1 - c0))
                    if grad_tile is None:
                        torch.mm(image_scaled_rows, text_cols.T, out=exp_tile)
                        grad_tile = softmax_pair_grad_direct(exp_tile, row_lse[r0:r1], shard_col_lse[c0:c1],
                                                             own_weight, col_weight)
                    if own_shard:
                        diagonal_of_tile(grad_tile, r0, c0).sub_(own_weight + col_weight)
                    if split_rows:
                        to_images = grad_tile @ text_cols
                        own_scale_grad += (image_rows * to_images).sum()
                        grad_image_unscaled[r0:r1] += to_images
                    else:
                        grad_image_unscaled[r0:r1].addmm_(grad_tile, text_cols)
                    grad_text_part[c0:c1].addmm_(grad_tile.T, image_scaled_rows)
            travelling = [grad_text_part, travelling_scale_grad.reshape(1)]
            if pending is not None:
                received = pending.wait()
                travelling = [received[0] + grad_text_part, received[1] + travelling_scale_grad.reshape(1)]
            pending = ring.shift(travelling, plan.batch_sizes[ring.source_rank(step + 1)])
        grad_text, arrived_scale_grad = pending.wait()

        if split_rows:
            grad_scale = own_scale_grad + arrived_scale_grad[0]
            grad_image = grad_image_unscaled.mul_(scale)
        else:
            scale_grad_part = torch.vdot(image.reshape(-1), grad_image_unscaled.reshape(-1))
            totals = _all_reduce_sum(torch.stack([grad_loss, scale_grad_part]), ring)
            grad_scale = grad_loss * totals[1]
            feature_factor = totals[0] if plan.gradients_from_all_ranks else grad_loss
            grad_image = grad_image_unscaled.mul_(scale * feature_factor)
            grad_text = grad_text.mul_(feature_factor)
        return grad_image, grad_text, grad_scale.reshape(scale.shape), None


def compute_dtype(features: torch.Tensor) -> torch.dtype:
    """float64 stays float64 (gradcheck); every other float dtype computes in float32."""
    return torch.float64 if features.dtype == torch.float64 else torch.float32


def prepare_features(features: torch.Tensor, normalize: bool, eps: float) -> torch.Tensor:
    """[B, D] any float -> [B, D] in the compute dtype, L2-normalised when asked."""
    features = features.to(compute_dtype(features))
    if normalize:
        features = torch.nn.functional.normalize(features, dim=-1, eps=eps)
    return features


def tiled_inputs(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor | float,
                 config: ClipLossConfig | SigLipLossConfig, world: LossWorld
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """What both tiled losses compute first: the checked features [B_r, D] in the compute dtype
    (normalised when config.normalize), the clamped scale (0-d, same dtype) and every rank's B_r."""
    check_feature_pair(image_features, text_features)
    world.check_matches_process_group()
    image = prepare_features(image_features, config.normalize, config.normalize_eps)
    text = prepare_features(text_features, config.normalize, config.normalize_eps)
    scale = clamp_logit_scale(logit_scale, config.max_logit_scale, image).to(image.dtype)
    return image, text, scale, tuple(world.batch_sizes(image.shape[0], image.device))


def metrics_from_hits(hits: torch.Tensor, logit_scale: torch.Tensor, local_rows: int,
                      global_rows: int) -> ContrastiveMetrics:
    """ContrastiveMetrics of a tiled loss from its global top-1 hit counts [2] (image, text)."""
    accuracies = hits / global_rows
    return ContrastiveMetrics(i2t_accuracy=accuracies[0], t2i_accuracy=accuracies[1],
                              logit_scale=logit_scale.detach(), local_batch_size=local_rows,
                              global_batch_size=global_rows)


def tiled_clip_loss(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor,
                    plan: TilePlan) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [B_r, D] and scale 0-d, all in one float dtype -> (loss 0-d, global hits [2])."""
    return TiledClipFunction.apply(image_features, text_features, logit_scale, plan)


class TiledClipLoss(ClipFamilyLoss):
    """ClipLoss's interface and results, computed in tiles (see the module docstring).

    TiledClipLoss(ClipLoss's arguments, *, tile_size=DEFAULT_TILE_SIZE,
                  keep_tiles_max_bytes=DEFAULT_KEEP_TILES_MAX_BYTES)
    forward(image_features [B, D], text_features [B, D], logit_scale (exp'd, 0-d or float),
            output_dict=False, *, return_metrics=False)
      -> loss (0-d float32; float64 for float64 inputs) or {"contrastive_loss": loss}; with
         return_metrics, (that, ContrastiveMetrics) with top-1 accuracies over the global batch.

    tile_size: rows and columns per tile. keep_tiles_max_bytes: when this rank's [B_r, G] logits
    fit, forward keeps them (exp'd) for backward instead of recomputing them: faster, O(B_r x G)
    memory. Above the budget memory is O(B_r x tile_size). Horovod is not supported.
    """

    def __init__(self, *clip_loss_arguments, tile_size: int = DEFAULT_TILE_SIZE,
                 keep_tiles_max_bytes: int = DEFAULT_KEEP_TILES_MAX_BYTES, **clip_loss_options) -> None:
        super().__init__(*clip_loss_arguments, **clip_loss_options)
        if self.config.use_horovod and self.config.world_size > 1:
            raise ValueError("use_horovod: the tiled losses pass shards with torch.distributed only")
        validate_tiling(tile_size, keep_tiles_max_bytes)
        self.tile_size = tile_size
        self.keep_tiles_max_bytes = keep_tiles_max_bytes

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor | float, output_dict: bool = False, *,
                return_metrics: bool = False):
        config = self.config
        with fp32_region(image_features):
            image, text, scale, batch_sizes = tiled_inputs(image_features, text_features, logit_scale, config,
                                                           self.world)
            global_rows = sum(batch_sizes)
            local_rows_loss = config.local_loss and self.world.is_distributed
            kept_bytes = image.shape[0] * global_rows * image.element_size()
            plan = TilePlan(ring=Ring(), batch_sizes=batch_sizes, tile_size=self.tile_size,
                            keep_tiles=kept_bytes <= self.keep_tiles_max_bytes and not local_rows_loss,
                            local_rows_loss=local_rows_loss,
                            gradients_from_all_ranks=config.gather_with_grad, want_metrics=return_metrics)
            loss, hits = tiled_clip_loss(image, text, scale, plan)
        return loss_result({"contrastive_loss": loss}, output_dict,
                           metrics_from_hits(hits, scale, image.shape[0], global_rows) if return_metrics else None)
