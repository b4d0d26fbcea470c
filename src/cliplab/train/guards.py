"""Non-finite step guard: skip a step whose loss or gradient is not finite, on every rank at once.

The decision is all-reduced (MAX of a 0/1 flag), so one rank seeing a NaN makes every rank skip and
DDP replicas never diverge. A skipped step leaves the parameters and the optimiser state untouched
(the gradients are discarded before `optimizer.step`). `max_consecutive` skips in a row raise
`NonFiniteLossError`; the loop does not save a checkpoint then, so the last good one is kept.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from cliplab.distributed.collectives import is_distributed
from cliplab.errors import RunStoppedError


class NonFiniteLossError(RunStoppedError, RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient: the run stops itself (the CLI
    prints the message as one line, exit status 1)."""


def any_rank_true(flag: bool, device: torch.device) -> bool:
    """True on every rank when `flag` is True on at least one rank (one all_reduce of an int)."""
    if not is_distributed():
        return bool(flag)
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


class NonFiniteGuard:
    """Counts non-finite steps; total_skips and consecutive are checkpointed by the loop."""

    def __init__(self, max_consecutive: int, *, total_skips: int = 0, consecutive: int = 0):
        self.max_consecutive = max_consecutive
        self.total_skips = total_skips
        self.consecutive = consecutive

    def should_skip(self, loss: torch.Tensor, grad_norm: torch.Tensor | None, device: torch.device) -> bool:
        """All ranks agree: True when any rank's loss (or the global gradient norm) is not finite."""
        local_bad = not math.isfinite(float(loss))
        if grad_norm is not None:
            local_bad = local_bad or not math.isfinite(float(grad_norm))
        return any_rank_true(local_bad, device)

    def record(self, skipped: bool, step: int) -> None:
        """Update the counters after a step; raise once `max_consecutive` steps in a row were skipped."""
        if not skipped:
            self.consecutive = 0
            return
        self.total_skips += 1
        self.consecutive += 1
        if self.consecutive >= self.max_consecutive:
            raise NonFiniteLossError(
                f"{self.consecutive} consecutive steps (up to step {step}) had a non-finite loss or gradient "
                f"(guards.max_nonfinite_steps={self.max_consecutive}); stopping. The last checkpoint saved "
                f"before them is kept: lower --lr, enable --grad-clip-norm, or check the data."
            )
