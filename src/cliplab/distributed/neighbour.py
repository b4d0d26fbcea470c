"""Point-to-point exchange with ring neighbours, plain and differentiable (open_clip's names).

`neighbour_exchange(from_rank, to_rank, tensor)` sends `tensor` to `to_rank` and returns what
`from_rank` sent here. `neighbour_exchange_bidir(left_rank, right_rank, to_left, to_right)` sends
one tensor each way and returns `(from_right, from_left)`: what the right neighbour sent leftwards
and what the left neighbour sent rightwards.

Leftward and rightward messages carry different tags, so the pairing stays right when the left and
the right neighbour are the same process (a ring of two).

By default the received tensor has the sender's shape assumed equal to the local one (as in
open_clip); pass `recv_rows` (the sender's first dimension) when local batch sizes differ.

The autograd versions send the gradient back along the reverse path: the gradient of what this
rank received goes back to the rank it came from.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed import ProcessGroup

LEFTWARD_TAG = 1
RIGHTWARD_TAG = 2


def _receive_buffer(like: torch.Tensor, rows: int | None) -> torch.Tensor:
    if rows is None:
        return torch.empty_like(like)
    return like.new_empty((rows,) + tuple(like.shape[1:]))


def _run_p2p(operations: list[dist.P2POp]) -> None:
    for request in dist.batch_isend_irecv(operations):
        request.wait()


def neighbour_exchange(from_rank: int, to_rank: int, tensor: torch.Tensor,
                       group: ProcessGroup | None = None, recv_rows: int | None = None) -> torch.Tensor:
    """Send `tensor` [B, ...] to `to_rank`; return [recv_rows or B, ...] received from `from_rank`."""
    received = _receive_buffer(tensor, recv_rows)
    _run_p2p([
        dist.P2POp(dist.isend, tensor.contiguous(), to_rank, group=group, tag=RIGHTWARD_TAG),
        dist.P2POp(dist.irecv, received, from_rank, group=group, tag=RIGHTWARD_TAG),
    ])
    return received


def neighbour_exchange_bidir(left_rank: int, right_rank: int, tensor_to_left: torch.Tensor,
                             tensor_to_right: torch.Tensor, group: ProcessGroup | None = None,
                             recv_rows_from_right: int | None = None,
                             recv_rows_from_left: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Send one tensor to each neighbour; return `(from_right, from_left)`.

    `from_right` has `tensor_to_left`'s trailing shape (the right neighbour sent it leftwards);
    `from_left` has `tensor_to_right`'s.
    """
    from_right = _receive_buffer(tensor_to_left, recv_rows_from_right)
    from_left = _receive_buffer(tensor_to_right, recv_rows_from_left)
    _run_p2p([
        dist.P2POp(dist.isend, tensor_to_left.contiguous(), left_rank, group=group, tag=LEFTWARD_TAG),
        dist.P2POp(dist.isend, tensor_to_right.contiguous(), right_rank, group=group, tag=RIGHTWARD_TAG),
        dist.P2POp(dist.irecv, from_right, right_rank, group=group, tag=LEFTWARD_TAG),
        dist.P2POp(dist.irecv, from_left, left_rank, group=group, tag=RIGHTWARD_TAG),
    ])
    return from_right, from_left


class _NeighbourExchange(torch.autograd.Function):
    @staticmethod
    def forward(ctx, from_rank, to_rank, group, recv_rows, tensor):
        ctx.from_rank, ctx.to_rank, ctx.group = from_rank, to_rank, group
        ctx.sent_rows = tensor.shape[0]
        return neighbour_exchange(from_rank, to_rank, tensor, group=group, recv_rows=recv_rows)

    @staticmethod
    def backward(ctx, grad_received):
        # The received rows came from `from_rank`, so their gradient goes back there, and the
        # gradient of what this rank sent arrives from `to_rank`.
        grad_sent = neighbour_exchange(ctx.to_rank, ctx.from_rank, grad_received, group=ctx.group,
                                       recv_rows=ctx.sent_rows)
        return None, None, None, None, grad_sent


def neighbour_exchange_with_grad(from_rank: int, to_rank: int, tensor: torch.Tensor,
                                 group: ProcessGroup | None = None,
                                 recv_rows: int | None = None) -> torch.Tensor:
    """Differentiable `neighbour_exchange`: the gradient travels back from `to_rank`."""
    return _NeighbourExchange.apply(from_rank, to_rank, group, recv_rows, tensor)


class _NeighbourExchangeBidir(torch.autograd.Function):
    @staticmethod
    def forward(ctx, left_rank, right_rank, group, recv_rows_from_right, recv_rows_from_left,
                tensor_to_left, tensor_to_right):
        ctx.left_rank, ctx.right_rank, ctx.group = left_rank, right_rank, group
        ctx.sent_rows = (tensor_to_left.shape[0], tensor_to_right.shape[0])
        return neighbour_exchange_bidir(left_rank, right_rank, tensor_to_left, tensor_to_right,
                                        group=group, recv_rows_from_right=recv_rows_from_right,
                                        recv_rows_from_left=recv_rows_from_left)

    @staticmethod
    def backward(ctx, grad_from_right, grad_from_left):
        # Mirror the forward: the gradient of `from_right` travels right, that of `from_left` left.
        rows_to_left, rows_to_right = ctx.sent_rows
        # In the reversed exchange the original left neighbour plays "right": what it sends back
        # (the gradient of what it received from here) is the gradient of `tensor_to_left`.
        grad_tensor_to_left, grad_tensor_to_right = neighbour_exchange_bidir(
            ctx.right_rank, ctx.left_rank, grad_from_right, grad_from_left, group=ctx.group,
            recv_rows_from_right=rows_to_left, recv_rows_from_left=rows_to_right)
        return None, None, None, None, None, grad_tensor_to_left, grad_tensor_to_right


def neighbour_exchange_bidir_with_grad(left_rank: int, right_rank: int, tensor_to_left: torch.Tensor,
                                       tensor_to_right: torch.Tensor, group: ProcessGroup | None = None,
                                       recv_rows_from_right: int | None = None,
                                       recv_rows_from_left: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable `neighbour_exchange_bidir`; returns `(from_right, from_left)`."""
    return _NeighbourExchangeBidir.apply(left_rank, right_rank, group, recv_rows_from_right,
                                         recv_rows_from_left, tensor_to_left, tensor_to_right)
