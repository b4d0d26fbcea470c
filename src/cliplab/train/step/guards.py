"""Non-finite step guard: skip a step whose loss or gradient is not finite, on every rank at once.

The decision is agreed across ranks (`cliplab.distributed.agreement.any_rank`), so one rank seeing
a NaN makes every rank skip and DDP replicas never diverge. A skipped step leaves the parameters and
the optimiser state untouched (the gradients are discarded before `optimizer.step`).
`max_consecutive` skips in a row raise `NonFiniteLossError`; the trainer does not save a checkpoint
then, so the last good one is kept. The counts live in `TrainState`.
"""

from __future__ import annotations

import math

import torch

from cliplab.distributed.agreement import any_rank
from cliplab.errors import RunStoppedError
from cliplab.train.state import TrainState


class NonFiniteLossError(RunStoppedError, RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient: the run stops itself (the CLI
    prints the message as one line, exit status 1)."""


class NonFiniteGuard:
    """Decides whether a step is skipped, and stops the run after `max_consecutive` in a row."""

    def __init__(self, max_consecutive: int):
        self.max_consecutive = max_consecutive

    def should_skip(self, loss: torch.Tensor, grad_norm: torch.Tensor | None) -> bool:
        """All ranks agree: True when any rank's loss (or the global gradient norm) is not finite."""
        local_bad = not math.isfinite(float(loss))
        if grad_norm is not None:
            local_bad = local_bad or not math.isfinite(float(grad_norm))
        return any_rank(local_bad)

    def record(self, state: TrainState, skipped: bool) -> None:
        """Count the step just done in `state`; raise once `max_consecutive` steps in a row were skipped."""
        state.record_nonfinite(skipped)
        if state.consecutive_nonfinite >= self.max_consecutive:
            raise NonFiniteLossError(
                f"{state.consecutive_nonfinite} consecutive steps (up to step {state.step}) had a non-finite "
                f"loss or gradient (guards.max_nonfinite_steps={self.max_consecutive}); stopping. The last "
                f"checkpoint saved before them is kept: lower --lr, enable --grad-clip-norm, or check the data."
            )
