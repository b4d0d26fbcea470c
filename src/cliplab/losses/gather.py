"""How the losses see the process group: open_clip's `gather_features` and a small `LossWorld`.

`LossWorld` is the (rank, world_size, backend) a loss was built for. It checks at forward time that
the process group really is that shape (a mismatch would silently compute a different loss), and
offers the few collectives the losses need: every rank's batch size, a gather of features, and a
sum or maximum of small counters. Both torch.distributed and Horovod sit behind it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

from cliplab.distributed.collectives import (
    all_gather_no_grad,
    all_gather_with_grad,
    gather_batch_sizes,
    row_offsets,
)
from cliplab.distributed.horovod import (
    horovod_all_gather,
    horovod_batch_sizes,
    horovod_sum,
    horovod_world_info,
    require_horovod,
)


@dataclass(frozen=True, kw_only=True)
class LossWorld:
    """The process group a loss runs in. rank in [0, world_size); world_size 1 means no comms."""

    rank: int = 0
    world_size: int = 1
    use_horovod: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.world_size, int) or isinstance(self.world_size, bool) or self.world_size < 1:
            raise ValueError(f"world_size must be an int >= 1, got {self.world_size!r}")
        if not isinstance(self.rank, int) or isinstance(self.rank, bool) or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank must be an int in [0, world_size={self.world_size}), got {self.rank!r}")
        if self.use_horovod:
            require_horovod()

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def check_matches_process_group(self) -> None:
        """ValueError unless the live process group has this rank and world size."""
        if not self.is_distributed:
            return
        if self.use_horovod:
            actual = horovod_world_info()
        elif dist.is_available() and dist.is_initialized():
            actual = (dist.get_rank(), dist.get_world_size())
        else:
            raise ValueError(
                f"world_size={self.world_size} but torch.distributed is not initialised; call "
                "dist.init_process_group first or build the loss with world_size=1")
        if actual != (self.rank, self.world_size):
            raise ValueError(
                f"the loss was built for rank={self.rank}, world_size={self.world_size} but this "
                f"process is rank {actual[0]} of {actual[1]}")

    def batch_sizes(self, local_rows: int, device: torch.device) -> list[int]:
        """Every rank's batch size in rank order (one tiny collective; [local_rows] alone)."""
        if not self.is_distributed:
            return [local_rows]
        if self.use_horovod:
            return horovod_batch_sizes(local_rows)
        return gather_batch_sizes(local_rows, device)

    def gather(self, tensor: torch.Tensor, with_grad: bool, batch_sizes: list[int]) -> torch.Tensor:
        """[B_r, ...] -> [sum_r B_r, ...]; `with_grad` as in collectives.all_gather_with_grad."""
        if not self.is_distributed:
            return tensor
        if self.use_horovod:
            return horovod_all_gather(tensor, with_grad)
        if with_grad:
            return all_gather_with_grad(tensor, batch_sizes=batch_sizes)
        return all_gather_no_grad(tensor, batch_sizes=batch_sizes)

    def sum_no_grad(self, tensor: torch.Tensor) -> torch.Tensor:
        """Elementwise sum over ranks of a small detached tensor (counters)."""
        if not self.is_distributed:
            return tensor.detach()
        if self.use_horovod:
            return horovod_sum(tensor)
        summed = tensor.detach().clone()
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        return summed

    def max_no_grad(self, tensor: torch.Tensor) -> torch.Tensor:
        """Elementwise maximum over ranks of a small detached tensor."""
        if not self.is_distributed:
            return tensor.detach()
        if self.use_horovod:
            hvd = require_horovod()
            return hvd.allreduce(tensor.detach(), op=hvd.Max)
        reduced = tensor.detach().clone()
        dist.all_reduce(reduced, op=dist.ReduceOp.MAX)
        return reduced


def splice_local_rows(gathered: torch.Tensor, local: torch.Tensor, rank: int,
                      batch_sizes: list[int]) -> torch.Tensor:
    """Replace this rank's rows of a detached gather by the local tensor, restoring its grad path."""
    start = row_offsets(batch_sizes)[rank]
    return torch.cat([gathered[:start], local, gathered[start + batch_sizes[rank]:]], dim=0)


def gather_pair(world: LossWorld, image_features: torch.Tensor, text_features: torch.Tensor,
                local_loss: bool, gather_with_grad: bool,
                batch_sizes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """gather_features with the batch sizes already known; see `gather_features`."""
    if not world.is_distributed:
        return image_features, text_features
    all_image = world.gather(image_features, gather_with_grad, batch_sizes)
    all_text = world.gather(text_features, gather_with_grad, batch_sizes)
    if not gather_with_grad and not local_loss:
        all_image = splice_local_rows(all_image, image_features, world.rank, batch_sizes)
        all_text = splice_local_rows(all_text, text_features, world.rank, batch_sizes)
    return all_image, all_text


def gather_features(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    local_loss: bool = False,
    gather_with_grad: bool = False,
    rank: int = 0,
    world_size: int = 1,
    use_horovod: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """open_clip's gather: [B_r, D] per rank -> ([sum_r B_r, D], [sum_r B_r, D]) in rank order.

    gather_with_grad: the gathered tensors are differentiable (backward sums over ranks).
    Otherwise they are detached, except that when `local_loss` is False this rank's own rows are
    the local tensors, so its features keep their gradient path. Batch sizes may differ by rank.
    """
    world = LossWorld(rank=rank, world_size=world_size, use_horovod=use_horovod)
    world.check_matches_process_group()
    batch_sizes = world.batch_sizes(image_features.shape[0], image_features.device)
    return gather_pair(world, image_features, text_features, local_loss, gather_with_grad, batch_sizes)
