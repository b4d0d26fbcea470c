"""The few Horovod collectives the losses use, behind one import check.

Horovod is optional: it is imported on first use, and asking for it when it is not installed raises
an ImportError that says so, instead of a failed assertion deep in a training step.

Horovod's allgather accepts a different first dimension on every rank natively. Its backward
follows Horovod's own convention (see horovod.torch.mpi_ops), which cliplab does not re-test here:
the gloo path in `collectives` is the reference.
"""

from __future__ import annotations

from types import ModuleType

import torch


def require_horovod() -> ModuleType:
    """horovod.torch, or ImportError with an install hint when it is missing."""
    try:
        import horovod.torch as hvd
    except ImportError as error:
        raise ImportError(
            "use_horovod=True needs Horovod, which is not installed (pip install horovod); "
            "use torch.distributed instead by passing use_horovod=False") from error
    return hvd


def horovod_world_info() -> tuple[int, int]:
    hvd = require_horovod()
    return hvd.rank(), hvd.size()


def horovod_all_gather(tensor: torch.Tensor, with_grad: bool) -> torch.Tensor:
    """[B_r, ...] -> [sum_r B_r, ...] in rank order; detached unless `with_grad`."""
    hvd = require_horovod()
    if with_grad:
        return hvd.allgather(tensor)
    with torch.no_grad():
        return hvd.allgather(tensor.detach())


def horovod_batch_sizes(local_rows: int) -> list[int]:
    hvd = require_horovod()
    gathered = hvd.allgather(torch.tensor([int(local_rows)], dtype=torch.int64))
    return [int(rows) for rows in gathered.tolist()]


def horovod_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Elementwise sum over ranks, no autograd."""
    hvd = require_horovod()
    with torch.no_grad():
        return hvd.allreduce(tensor.detach(), op=hvd.Sum)
