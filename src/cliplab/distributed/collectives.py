"""Gathers and reductions over the process group, with and without autograd.

Every function here works in a single process too (dist not initialised, or a world of one): then a
gather returns its input and a reduction is the identity, so callers need no special case.

Gathers accept a different first dimension on every rank: the row counts are exchanged first (one
tiny collective), each rank pads to the largest count, and the padding is trimmed after the gather.

Gradient convention of `all_gather_with_grad`: the backward sums, over all ranks, the gradient each
rank's loss sends to the gathered tensor, and returns this rank's rows. So if every rank computes
the same global loss L from the gathered tensor, each rank's input receives N * dL/d(input), which
the 1/N averaging of DistributedDataParallel turns back into dL/d(input).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed import ProcessGroup


def is_distributed(group: ProcessGroup | None = None) -> bool:
    """True when a process group is initialised and has more than one member."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def world_info(group: ProcessGroup | None = None) -> tuple[int, int]:
    """(rank, world_size) of this process in `group`; (0, 1) when torch.distributed is not in use."""
    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def gather_batch_sizes(local_rows: int, device: torch.device | str = "cpu",
                       group: ProcessGroup | None = None) -> list[int]:
    """Every rank's row count, ordered by rank. One all_gather of an int64 per rank."""
    if not is_distributed(group):
        return [int(local_rows)]
    _, world_size = world_info(group)
    local = torch.tensor([int(local_rows)], dtype=torch.int64, device=device)
    gathered = [torch.empty_like(local) for _ in range(world_size)]
    dist.all_gather(gathered, local, group=group)
    return [int(rows.item()) for rows in gathered]


def row_offsets(batch_sizes: list[int]) -> list[int]:
    """Exclusive prefix sums: the first global row of each rank. [3, 2, 4] -> [0, 3, 5]."""
    offsets, total = [], 0
    for rows in batch_sizes:
        offsets.append(total)
        total += rows
    return offsets


def _gather_padded(tensor: torch.Tensor, batch_sizes: list[int], group: ProcessGroup | None) -> torch.Tensor:
    """[B_r, ...] on each rank -> [sum_r B_r, ...], rank order, no autograd."""
    max_rows = max(batch_sizes)
    tensor = tensor.contiguous()
    if tensor.shape[0] < max_rows:
        padding = tensor.new_zeros((max_rows - tensor.shape[0],) + tuple(tensor.shape[1:]))
        padded = torch.cat([tensor, padding], dim=0)
    else:
        padded = tensor
    gathered = [torch.empty_like(padded) for _ in batch_sizes]
    dist.all_gather(gathered, padded, group=group)
    return torch.cat([part[:rows] for part, rows in zip(gathered, batch_sizes)], dim=0)


def _check_gatherable(tensor: torch.Tensor, name: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dim() < 1:
        raise ValueError(f"{name} must have a first (batch) dimension to gather along, got a 0-d tensor")


def all_gather_no_grad(tensor: torch.Tensor, group: ProcessGroup | None = None,
                       batch_sizes: list[int] | None = None) -> torch.Tensor:
    """[B_r, ...] on rank r -> [sum_r B_r, ...] identical on every rank, detached from autograd.

    `batch_sizes` (every rank's B_r, in rank order) skips the size exchange when already known.
    Trailing dimensions and dtype must agree across ranks.
    """
    _check_gatherable(tensor, "tensor")
    if not is_distributed(group):
        return tensor.detach()
    if batch_sizes is None:
        batch_sizes = gather_batch_sizes(tensor.shape[0], tensor.device, group)
    with torch.no_grad():
        return _gather_padded(tensor.detach(), batch_sizes, group)


class _AllGatherWithGrad(torch.autograd.Function):
    """Forward: variable-size all_gather. Backward: sum the gradient over ranks, keep own rows."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, batch_sizes: list[int], group: ProcessGroup | None) -> torch.Tensor:
        rank, _ = world_info(group)
        ctx.group = group
        ctx.row_start = row_offsets(batch_sizes)[rank]
        ctx.rows = batch_sizes[rank]
        return _gather_padded(tensor, batch_sizes, group)

    @staticmethod
    def backward(ctx, grad_gathered: torch.Tensor):
        # Every rank's loss may depend on every rank's rows, so this rank's input gradient is the
        # sum of all ranks' gradients for its rows. A reduce_scatter would send less, but gloo
        # lacks it; all_reduce is available on every backend.
        summed = grad_gathered.contiguous().clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM, group=ctx.group)
        return summed[ctx.row_start:ctx.row_start + ctx.rows], None, None


def all_gather_with_grad(tensor: torch.Tensor, group: ProcessGroup | None = None,
                         batch_sizes: list[int] | None = None) -> torch.Tensor:
    """[B_r, ...] on rank r -> [sum_r B_r, ...] in rank order, differentiable.

    Backward returns to each rank the sum over all ranks of the gradient for its own rows (see the
    module docstring for the resulting factor N under DDP). Every rank must run backward through
    it, as with any collective. `batch_sizes` skips the size exchange when already known.
    """
    _check_gatherable(tensor, "tensor")
    if not is_distributed(group):
        return tensor
    if batch_sizes is None:
        batch_sizes = gather_batch_sizes(tensor.shape[0], tensor.device, group)
    return _AllGatherWithGrad.apply(tensor, batch_sizes, group)


class _AllReduceSumWithGrad(torch.autograd.Function):
    """Forward: sum over ranks. Backward: the gradient of every rank's copy of the sum, summed."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor, group: ProcessGroup | None) -> torch.Tensor:
        ctx.group = group
        summed = tensor.contiguous().clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM, group=group)
        return summed

    @staticmethod
    def backward(ctx, grad_summed: torch.Tensor):
        summed = grad_summed.contiguous().clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM, group=ctx.group)
        return summed, None


def all_reduce_sum_with_grad(tensor: torch.Tensor, group: ProcessGroup | None = None) -> torch.Tensor:
    """Elementwise sum of `tensor` over ranks (same shape everywhere), differentiable.

    The input gradient on each rank is the sum over ranks of the gradient each rank's loss sends to
    its copy of the result.
    """
    if not is_distributed(group):
        return tensor
    return _AllReduceSumWithGrad.apply(tensor, group)
