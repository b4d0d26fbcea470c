"""AdamW over the run's parameter groups (`param_groups`), gradient clipping, and the logit-scale clamp
applied after a step."""

from __future__ import annotations

import math

import torch
from torch import nn

from cliplab.errors import UserError
from cliplab.train.config import OptimConfig
from cliplab.train.step.param_groups import parameter_groups


def build_optimizer(trainable: nn.Module, config: OptimConfig, model: nn.Module | None = None) -> torch.optim.AdamW:
    """One AdamW over the trainable parameters of `trainable`, grouped as `param_groups` says
    (`model`: the cliplab model inside `trainable`, default `trainable` itself)."""
    groups = parameter_groups(trainable, config, model)
    if not any(group["params"] for group in groups):
        raise UserError("the model has no trainable parameters: --lock-image and --lock-text freeze both towers")
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps,
                             **update_kernel(trainable))


def update_kernel(model: nn.Module) -> dict:
    """AdamW's implementation: the fused kernel (one pass over each parameter's memory instead of
    about ten; elementwise, so its results do not depend on threads or on how the parameters are
    grouped, and a resumed run repeats them bitwise) wherever torch has one for every parameter's
    device, else the per-parameter loop (never `foreach`, whose grouping could differ between runs)."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    devices = {parameter.device.type for parameter in model.parameters()}
    if devices and devices <= set(_get_fused_kernels_supported_devices()):
        return {"fused": True}
    return {"foreach": False}


def describe_optimizer(optimizer: torch.optim.Optimizer, config: OptimConfig) -> str:
    """The start-up line of the optimiser: its groups' lr scales and weight decays in brief."""
    groups = [group for group in optimizer.param_groups if group["params"]]
    scales = [group.get("lr_scale", 1.0) for group in groups]
    decays = ", ".join(f"{decay:g}" for decay in sorted({group["weight_decay"] for group in groups}))
    return (f"optimiser: AdamW, lr {config.lr:g} times x{min(scales):.3g} to x{max(scales):.3g} in {len(groups)} "
            f"parameter groups, weight decay {decays}")


def log_scale_upper_bound(max_logit_scale: float, dtype: torch.dtype) -> torch.Tensor:
    """The largest `dtype` value not above ln(max_logit_scale) (rounding to nearest could exceed it)."""
    exact = math.log(max_logit_scale)
    bound = torch.tensor(exact, dtype=dtype)
    if bound.item() > exact:
        bound = torch.nextafter(bound, torch.tensor(-math.inf, dtype=dtype))
    return bound


# The log-temperature's name, unsharded and as FSDP2 holds it (`cliplab.train.parallel.fsdp`).
_LOGIT_SCALE_NAMES = ("logit_scale", "logit_scale.original")


@torch.no_grad()
def clamp_logit_scale_(model: nn.Module, max_logit_scale: float) -> None:
    """Clamp the log-temperature parameter `logit_scale` to [0, ln max_logit_scale] in place (of a
    sharded parameter, this rank's part)."""
    for name, parameter in model.named_parameters():
        if any(name == suffix or name.endswith("." + suffix) for suffix in _LOGIT_SCALE_NAMES):
            local = parameter.to_local() if hasattr(parameter, "to_local") else parameter
            upper = log_scale_upper_bound(max_logit_scale, local.dtype).to(local.device)
            torch.clamp_(local, min=torch.zeros_like(upper), max=upper)


def clip_gradients(model: nn.Module, max_norm: float | None) -> torch.Tensor | None:
    """Clip the global gradient L2 norm to max_norm (if set); return the norm before clipping
    (None when no parameter has a gradient)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return None
    if max_norm is None:
        return torch.nn.utils.get_total_norm(grads, foreach=False)
    return torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], max_norm,
                                          foreach=False)
