"""AdamW with open_clip's weight-decay exclusions, and the logit-scale clamp applied after a step."""

from __future__ import annotations

import math

import torch
from torch import nn

from cliplab.errors import UserError
from cliplab.train.config import OptimConfig

# open_clip's rule (main.py): no decay when ndim < 2 or the name contains bn/ln/bias/logit_scale.
# cliplab adds positional / class embeddings and gains, which are also not weights to shrink.
_NO_DECAY_NAME_PARTS = ("bn", "ln", "bias", "logit_scale", "logit_bias", "norm", "position_embedding",
                        "positional_embedding", "class_embedding", "cls_token", "gain")


def excluded_from_weight_decay(name: str, parameter: torch.Tensor) -> bool:
    """True for biases, norm parameters, gains, positional/class embeddings and logit scale/bias."""
    return parameter.ndim < 2 or any(part in name for part in _NO_DECAY_NAME_PARTS)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups over the trainable parameters: decayed and not decayed (names kept for tests)."""
    decay, no_decay, decay_names, no_decay_names = [], [], [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        if excluded_from_weight_decay(name, parameter):
            no_decay.append(parameter)
            no_decay_names.append(name)
        else:
            decay.append(parameter)
            decay_names.append(name)
    return [
        {"params": no_decay, "weight_decay": 0.0, "param_names": no_decay_names},
        {"params": decay, "weight_decay": weight_decay, "param_names": decay_names},
    ]


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    groups = parameter_groups(model, config.wd)
    if not any(group["params"] for group in groups):
        raise UserError("the model has no trainable parameters: --lock-image and --lock-text freeze both towers")
    # foreach=False keeps the update order identical between runs (bitwise resume on CPU).
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps,
                             foreach=False)


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
