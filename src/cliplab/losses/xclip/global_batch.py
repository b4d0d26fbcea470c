"""Row-sharded evaluation of a loss over the global batch, shared by every x-clip term.

Each process scores its own rows (anchors) against the columns gathered from all processes, and the
per-rank shares are summed over ranks. So the loss every rank returns equals the loss one process
would compute on the whole batch, while each rank builds only a [B_local, B_global] slab.

Gradient convention (the same as `cliplab.losses.clip.ClipLoss`): every rank holds the global loss
L, and each rank's local features receive N * dL/d(local features); DistributedDataParallel's 1/N
gradient averaging turns that back into the single-process gradient. The factor comes from the two
collectives used here: `all_gather_with_grad` sums over ranks the gradient for this rank's rows,
and `all_reduce_sum_with_grad` sends each rank's share the sum (N copies) of the loss gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cliplab.distributed.collectives import (all_gather_no_grad, all_gather_with_grad, all_reduce_sum_with_grad,
                                             gather_batch_sizes, row_offsets, world_info)


@dataclass(frozen=True)
class GlobalRows:
    """Where this rank's rows sit in the global batch.

    row_offset: global index of this rank's first row; global_batch_size: rows over all ranks;
    batch_sizes: every rank's row count, in rank order.
    """

    row_offset: int
    global_batch_size: int
    batch_sizes: list[int]

    def positive_index(self, local_rows: int, device: torch.device) -> torch.Tensor:
        """[local_rows] long: the global column of each local row's own pair."""
        return torch.arange(local_rows, device=device) + self.row_offset


def locate_rows(local_rows: int, device: torch.device | str = "cpu") -> GlobalRows:
    """Exchange row counts (one tiny collective under torch.distributed) and locate this rank's rows."""
    rank, _ = world_info()
    batch_sizes = gather_batch_sizes(local_rows, device)
    return GlobalRows(row_offset=row_offsets(batch_sizes)[rank], global_batch_size=sum(batch_sizes),
                      batch_sizes=batch_sizes)


def gather_columns(tensor: torch.Tensor, rows: GlobalRows) -> torch.Tensor:
    """[B_local, ...] -> [B_global, ...] in rank order, differentiable (see the module docstring)."""
    return all_gather_with_grad(tensor, batch_sizes=rows.batch_sizes)


def gather_columns_no_grad(tensor: torch.Tensor, rows: GlobalRows) -> torch.Tensor:
    """[B_local, ...] -> [B_global, ...] in rank order, detached: for masks and indices."""
    return all_gather_no_grad(tensor, batch_sizes=rows.batch_sizes)


def sum_shares_over_ranks(loss_share: torch.Tensor) -> torch.Tensor:
    """0-d share of this rank -> 0-d sum over ranks, identical on every rank, differentiable."""
    return all_reduce_sum_with_grad(loss_share.reshape(1)).reshape(())
