"""Conventions every cliplab loss shares: input checks, fp32 upcast, logit-scale clamp, metrics.

The math of each loss lives in its own module; this one holds only what they must all agree on, so
that a dense, tiled or distributed loss reports the same figures and rejects the same bad input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

DEFAULT_MAX_LOGIT_SCALE = 100.0
DEFAULT_NORMALIZE_EPS = 1e-6


@dataclass(frozen=True)
class ContrastiveMetrics:
    """Monitoring figures of one contrastive loss evaluation, all detached.

    i2t_accuracy / t2i_accuracy: top-1 accuracy over the global batch (0-d float tensors); an image
    is right when its own caption scores highest among all global captions, and the reverse.
    logit_scale: the clamped scale actually used (0-d float tensor).
    local_batch_size: rows held by this process; global_batch_size: rows over all processes.
    """

    i2t_accuracy: torch.Tensor
    t2i_accuracy: torch.Tensor
    logit_scale: torch.Tensor
    local_batch_size: int
    global_batch_size: int

    def as_floats(self) -> dict[str, float]:
        return {
            "i2t_accuracy": float(self.i2t_accuracy),
            "t2i_accuracy": float(self.t2i_accuracy),
            "logit_scale": float(self.logit_scale),
            "local_batch_size": float(self.local_batch_size),
            "global_batch_size": float(self.global_batch_size),
        }


def check_feature_pair(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    image_name: str = "image_features",
    text_name: str = "text_features",
) -> None:
    """Raise ValueError unless both are 2-D [B, D] tensors with equal B and D."""
    for name, features in ((image_name, image_features), (text_name, text_features)):
        if not isinstance(features, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(features).__name__}")
        if features.dim() != 2:
            raise ValueError(f"{name} must be 2-D [batch, dim], got shape {tuple(features.shape)}")
        if not features.is_floating_point():
            raise ValueError(f"{name} must be floating point, got {features.dtype}")
    check_paired_sizes(image_features, text_features, image_name, text_name, feature_axis=1,
                       feature_size="feature size")
    if image_features.shape[0] == 0:
        raise ValueError(f"{image_name} is empty: a contrastive loss needs at least one pair")


def check_paired_sizes(first: torch.Tensor, second: torch.Tensor, first_name: str, second_name: str, *,
                       feature_axis: int, feature_size: str) -> None:
    """ValueError naming both unless they agree in batch size (dim 0) and in dim `feature_axis`."""
    for axis, what in ((0, "batch size"), (feature_axis, feature_size)):
        if first.shape[axis] != second.shape[axis]:
            raise ValueError(f"{first_name} and {second_name} must have the same {what}, got "
                             f"{first.shape[axis]} and {second.shape[axis]}")


def to_fp32_features(features: torch.Tensor, normalize: bool, eps: float) -> torch.Tensor:
    """[B, D] any float dtype -> [B, D] float32, L2-normalised along D when `normalize`.

    The upcast happens before normalisation so that bf16/fp16 inputs lose no more precision.
    """
    features = features.float()
    if normalize:
        features = F.normalize(features, dim=-1, eps=eps)
    return features


def as_scalar_tensor(value: torch.Tensor | float, name: str, reference: torch.Tensor) -> torch.Tensor:
    """A python float or 0-/1-element tensor -> 0-d float32 tensor on `reference`'s device.

    Raises ValueError naming `name` when the value is not finite.
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got shape {tuple(value.shape)}")
        tensor = value.float().reshape(())
        if tensor.device != reference.device:
            tensor = tensor.to(reference.device)
    else:
        tensor = torch.tensor(float(value), dtype=torch.float32, device=reference.device)
    # .item() would sync a CUDA stream on every step; isfinite on a 0-d tensor is cheap on CPU, and
    # on CUDA the check is skipped while tracing/compiling.
    if not torch.compiler.is_compiling() and not bool(torch.isfinite(tensor.detach())):
        raise ValueError(f"{name} must be finite, got {tensor.item()}")
    return tensor


def clamp_logit_scale(
    logit_scale: torch.Tensor | float, max_logit_scale: float | None, reference: torch.Tensor
) -> torch.Tensor:
    """The (already exponentiated) logit scale as a 0-d fp32 tensor, clamped to `max_logit_scale`.

    Above the maximum the gradient with respect to the scale is zero, as with open_clip's clamp of
    the log-scale in the training loop; below it the scale passes through unchanged.
    """
    scale = as_scalar_tensor(logit_scale, "logit_scale", reference)
    if max_logit_scale is not None:
        scale = scale.clamp(max=max_logit_scale)
    return scale


def validate_max_logit_scale(max_logit_scale: float | None) -> float | None:
    if max_logit_scale is not None and not (math.isfinite(max_logit_scale) and max_logit_scale > 0):
        raise ValueError(f"max_logit_scale must be a positive finite number or None, got {max_logit_scale}")
    return max_logit_scale


def loss_result(terms: dict[str, torch.Tensor], output_dict: bool, metrics: ContrastiveMetrics | None = None):
    """What a loss's forward returns (open_clip's convention): `terms` when output_dict, else its
    values (one tensor alone, several as a tuple); with metrics, the pair (that, metrics)."""
    values = tuple(terms.values())
    result = terms if output_dict else (values[0] if len(values) == 1 else values)
    return result if metrics is None else (result, metrics)
