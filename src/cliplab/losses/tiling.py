"""Tile math shared by the tiled contrastive losses: pure functions on one [R, C] tile of logits.

A tile holds logits X = s * I[rows] @ T[cols].T (plus the bias for SigLIP). The functions here
overwrite the tile in place where they can, so a tile costs one [R, C] buffer and no temporaries.

Softmax statistics are kept as log-sum-exps (LSE) per row and per column and merged across tiles
with `logaddexp`. One exp per element gives both: with E = exp(X - m_i) (m_i the row maximum),
row sums are E.sum(1) and column sums are u @ E with u_i = exp(m_i - M), M = max_i m_i, so that
sum_i exp(X_ij) = exp(M) * (u @ E)_j. That is safe unless some column's sum falls below
exp(-STABLE_EXP_RANGE) relative to exp(M) (its largest logit is far below the tile's largest);
then the column statistics are recomputed directly (`column_lse_direct`). The backward pass uses
the same factorisation, P_row = E * a_i and P_col = E * u_i * v_j, so it needs no second exp.
"""

from __future__ import annotations

import math

import torch

# exp(-60) ~ 1e-26 is far above fp32's smallest normal number (~1e-38): every term that can matter
# to a sum of that size is a product of two normal numbers.
STABLE_EXP_RANGE = 60.0


def tile_bounds(size: int, tile_size: int) -> list[tuple[int, int]]:
    """[0, size) cut into consecutive (start, stop) ranges of at most `tile_size`."""
    return [(start, min(start + tile_size, size)) for start in range(0, size, tile_size)]


def diagonal_of_tile(tile: torch.Tensor, row_start: int, col_start: int) -> torch.Tensor:
    """The entries (i, i) of the global matrix that fall in `tile`, whose corner is (row_start, col_start)."""
    return tile.diagonal(offset=row_start - col_start)


def merge_lse(running: torch.Tensor, update: torch.Tensor) -> torch.Tensor:
    """log(exp(running) + exp(update)) elementwise; -inf entries in `running` mean 'nothing yet'."""
    return torch.logaddexp(running, update)


def merge_best(best_value: torch.Tensor, best_index: torch.Tensor, value: torch.Tensor,
               index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Running (max, argmax) over tiles visited in any order; ties go to the smaller index,
    as `argmax` over the whole row would give."""
    better = (value > best_value) | ((value == best_value) & (index < best_index))
    return torch.where(better, value, best_value), torch.where(better, index, best_index)


def softmax_tile_stats_(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One tile's softmax statistics; overwrites `logits` [R, C] with E = exp(logits - row_max).

    Returns (row_max [R], row_lse [R], col_lse [C] or None): the LSEs of the tile's rows and
    columns. col_lse is None when the one-exp factorisation would underflow for some column; the
    caller then computes it with `column_lse_direct` from the logits.
    """
    row_max = logits.amax(dim=1)
    exp_tile = logits.sub_(row_max[:, None]).exp_()
    row_lse = row_max + exp_tile.sum(dim=1).log()
    tile_max = row_max.max()
    row_weights = (row_max - tile_max).exp()
    col_sums = torch.mv(exp_tile.T, row_weights)
    if bool(col_sums.min() < math.exp(-STABLE_EXP_RANGE)):
        return row_max, row_lse, None
    return row_max, row_lse, tile_max + col_sums.log()


def column_lse_direct(logits: torch.Tensor) -> torch.Tensor:
    """[R, C] -> [C]: logsumexp over rows, computed without the factorisation (the rare slow path)."""
    return torch.logsumexp(logits, dim=0)


def softmax_pair_grad_from_exp_(exp_tile: torch.Tensor, row_shift: torch.Tensor, row_lse: torch.Tensor,
                                col_lse: torch.Tensor, row_weight: torch.Tensor, col_weight: torch.Tensor,
                                workspace: torch.Tensor) -> torch.Tensor | None:
    """Turn E = exp(X - row_shift) [R, C] in place into row_weight * P_row + col_weight * P_col.

    P_row = exp(X - row_lse[:, None]) (row softmax), P_col = exp(X - col_lse[None, :]) (column
    softmax over the full matrix). row_shift [R] must be <= row_lse. workspace: any [R, C] buffer.
    Returns the tile, or None (tile untouched) when exp(max(row_shift) - col_lse) could overflow;
    the caller then uses `softmax_pair_grad_direct` on recomputed logits.
    """
    shift_max = row_shift.max()
    if bool(shift_max - col_lse.min() > STABLE_EXP_RANGE):
        return None
    row_factor = (row_shift - row_lse).exp() * row_weight
    row_weights = (row_shift - shift_max).exp()
    col_factor = (shift_max - col_lse).exp() * col_weight
    factors = torch.addr(row_factor[:, None], row_weights, col_factor, out=workspace)
    return exp_tile.mul_(factors)


def softmax_pair_grad_direct(logits: torch.Tensor, row_lse: torch.Tensor, col_lse: torch.Tensor,
                             row_weight: torch.Tensor, col_weight: torch.Tensor) -> torch.Tensor:
    """Same result as `softmax_pair_grad_from_exp_` from raw logits [R, C] (two exps; overwrites them)."""
    grad = (logits - row_lse[:, None]).exp_().mul_(row_weight)
    return grad.add_(logits.sub_(col_lse[None, :]).exp_().mul_(col_weight))


def softmax_parts_direct(logits: torch.Tensor, row_lse: torch.Tensor, col_lse: torch.Tensor,
                         row_weight: torch.Tensor, col_weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row_weight * P_row, col_weight * P_col), each [R, C], kept apart; overwrites `logits`."""
    row_part = (logits - row_lse[:, None]).exp_().mul_(row_weight)
    col_part = logits.sub_(col_lse[None, :]).exp_().mul_(col_weight)
    return row_part, col_part


def sigmoid_tile_loss_sum(logits: torch.Tensor, workspace: torch.Tensor) -> torch.Tensor:
    """[R, C] logits -> 0-d: sum of softplus(X) = -log sigmoid(-X), every entry taken as a negative.

    The positives' correction (-X_ii, since softplus(X) - X = -log sigmoid(X)) is the caller's.
    """
    torch._C._nn.softplus(logits, 1.0, 20.0, out=workspace)
    return workspace.sum()


def sigmoid_tile_grad_(logits: torch.Tensor) -> torch.Tensor:
    """[R, C] logits -> sigmoid(X) in place: d softplus(X) / dX, the negatives' gradient."""
    return logits.sigmoid_()


class Workspace:
    """Reusable flat buffers handed out as [rows, cols] views, so tiles do not page-fault anew."""

    def __init__(self, reference: torch.Tensor) -> None:
        self._reference = reference
        self._buffers: dict[str, torch.Tensor] = {}

    def matrix(self, name: str, rows: int, cols: int) -> torch.Tensor:
        needed = rows * cols
        buffer = self._buffers.get(name)
        if buffer is None or buffer.numel() < needed:
            buffer = self._reference.new_empty(needed)
            self._buffers[name] = buffer
        return buffer[:needed].view(rows, cols)
