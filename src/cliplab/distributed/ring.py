"""Ring pass of per-rank shards, with the next shard in flight while the current one is used.

Rank r sends to its right neighbour r + 1 and receives from its left neighbour r - 1 (mod N). After
k shifts rank r holds the shard that started on rank r - k; after N shifts every shard is home.

Two uses, both by the tiled losses:
- `ring_shards(tensors, rows_per_rank)`: iterate over all N ranks' shards (own first), the transfer
  of the next shard started before the current one is handed out, so sending overlaps the compute
  the caller does with it. N - 1 transfers.
- `Ring.shift(tensors, rows_from_left)`: one asynchronous step right, for accumulators that travel
  with a shard (its gradient, its column statistics) and must be updated before they move on;
  N such shifts bring an accumulator home.

Every rank must make the same calls in the same order (as with any collective). Shards may have a
different first dimension on every rank; the receiver is told the sender's row count. Messages of
the two kinds carry different tags, so they never pair up wrongly, even in a ring of two where the
left and the right neighbour are the same process. Each step is one `batch_isend_irecv`, which
NCCL needs to run a ring without deadlock and gloo runs as plain isend/irecv.

In a world of one (or without torch.distributed) the ring has one member: `ring_shards` yields the
local shard only and `shift` returns its input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.distributed as dist
from torch.distributed import ProcessGroup

from cliplab.distributed.collectives import world_info

SHARD_TAG = 31
ACCUMULATOR_TAG = 32


class PendingShift:
    """Tensors on their way from the left neighbour; `wait()` returns them once arrived."""

    def __init__(self, requests: list, received: list[torch.Tensor]) -> None:
        self._requests = requests
        self._received = received

    def wait(self) -> list[torch.Tensor]:
        for request in self._requests:
            request.wait()
        self._requests = []
        return self._received


@dataclass(frozen=True)
class Ring:
    """The ring of ranks of `group` (default: the world), seen from this process."""

    group: ProcessGroup | None = None

    @property
    def rank(self) -> int:
        return world_info(self.group)[0]

    @property
    def world_size(self) -> int:
        return world_info(self.group)[1]

    def source_rank(self, step: int) -> int:
        """The rank whose shard this rank holds after `step` shifts."""
        return (self.rank - step) % self.world_size

    def _global_rank(self, group_rank: int) -> int:
        if self.group is None:
            return group_rank
        return dist.get_global_rank(self.group, group_rank)

    def shift(self, tensors: Sequence[torch.Tensor], rows_from_left: int,
              tag: int = ACCUMULATOR_TAG) -> PendingShift:
        """Start sending `tensors` (each [rows, ...]) right and receiving the left neighbour's.

        The received tensors have the sent ones' trailing shapes and dtypes and `rows_from_left`
        rows. Returns at once; the caller must not modify `tensors` before `wait()`.
        """
        world_size = self.world_size
        if world_size == 1:
            return PendingShift([], list(tensors))
        rank = self.rank
        right = self._global_rank((rank + 1) % world_size)
        left = self._global_rank((rank - 1) % world_size)
        received = [tensor.new_empty((rows_from_left,) + tuple(tensor.shape[1:])) for tensor in tensors]
        operations = []
        for tensor, buffer in zip(tensors, received):
            operations.append(dist.P2POp(dist.isend, tensor.contiguous(), right, group=self.group, tag=tag))
            operations.append(dist.P2POp(dist.irecv, buffer, left, group=self.group, tag=tag))
        return PendingShift(dist.batch_isend_irecv(operations), received)


def ring_shards(ring: Ring, tensors: Sequence[torch.Tensor],
                rows_per_rank: Sequence[int]) -> Iterator[tuple[int, int, list[torch.Tensor]]]:
    """Yield `(step, source_rank, shard_tensors)` for step = 0 .. N-1, this rank's own shard first.

    tensors: this rank's shard, each [rows_per_rank[rank], ...]; rows_per_rank: every rank's row
    count in rank order. While the caller works on step k's shard, step k+1's is being received.
    """
    world_size = ring.world_size
    if len(rows_per_rank) != world_size:
        raise ValueError(f"rows_per_rank must have one entry per rank ({world_size}), got {len(rows_per_rank)}")
    current = list(tensors)
    for step in range(world_size):
        pending = None
        if step + 1 < world_size:
            pending = ring.shift(current, rows_per_rank[ring.source_rank(step + 1)], tag=SHARD_TAG)
        yield step, ring.source_rank(step), current
        if pending is not None:
            current = pending.wait()
