"""The numeric precision of a step: its autocast context and, for fp16, the GradScaler around
backward and the optimiser step."""

from __future__ import annotations

import contextlib

import torch

from cliplab.train.config import ConfigError, LoopConfig


def build_grad_scaler(loop: LoopConfig, device: torch.device) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16 ('amp'/'fp16') on CUDA; None otherwise."""
    if not loop.uses_grad_scaler:
        return None
    if device.type != "cuda":
        raise ConfigError("loop.precision", loop.precision, "needs CUDA (fp16 with a GradScaler); use bf16 on CPU")
    return torch.amp.GradScaler("cuda")


class Precision:
    """autocast(): the context the forward runs in (null for fp32); backward / unscale_ / step put
    the GradScaler (`scaler`, None unless fp16) where fp16 needs it."""

    def __init__(self, loop: LoopConfig, device: torch.device):
        self.device = device
        self.autocast_dtype = getattr(torch, loop.autocast_dtype) if loop.autocast_dtype else None
        self.scaler = build_grad_scaler(loop, device)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def backward(self, total: torch.Tensor) -> None:
        (self.scaler.scale(total) if self.scaler is not None else total).backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """Turn the gradients back into true gradients (before clipping and the finite check)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    @property
    def checks_gradients(self) -> bool:
        """Whether the scaler skips steps with an inf/NaN gradient itself (then the guard looks at
        the loss only)."""
        return self.scaler is not None

    def step(self, optimizer: torch.optim.Optimizer, *, skip: bool) -> None:
        """The optimiser step unless `skip`; the scaler's scale update either way."""
        if not skip:
            (self.scaler.step(optimizer) if self.scaler is not None else optimizer.step())
        if self.scaler is not None:
            self.scaler.update()
