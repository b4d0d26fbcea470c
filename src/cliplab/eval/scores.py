"""Turning embeddings into label probabilities, the way a CLIP model scores image-text pairs."""

from __future__ import annotations

import math

import torch

# Scoring clamps exp(logit_scale) where the losses do by default (open_clip's 100), so a probability
# matches what training optimised.
from cliplab.losses.common import DEFAULT_MAX_LOGIT_SCALE as MAX_LOGIT_SCALE


def model_logit_scale(model: torch.nn.Module) -> float:
    """exp(model.logit_scale) clamped to MAX_LOGIT_SCALE (the parameter holds the log, as open_clip)."""
    log_scale = getattr(model, "logit_scale", None)
    if not isinstance(log_scale, torch.Tensor):
        raise ValueError(f"{type(model).__name__} has no logit_scale parameter to turn similarities into probabilities")
    return min(math.exp(float(log_scale.detach())), MAX_LOGIT_SCALE)


def label_probabilities(image_features: torch.Tensor, class_embeddings: torch.Tensor,
                        logit_scale: float) -> torch.Tensor:
    """softmax over labels of logit_scale * cosine similarity: [N, C] float32, rows sum to one.

    image_features: [N, E] and class_embeddings: [C, E], both unit-norm rows.
    """
    if image_features.dim() != 2 or class_embeddings.dim() != 2 or image_features.shape[1] != class_embeddings.shape[1]:
        raise ValueError(f"need image_features [N, E] and class_embeddings [C, E], got {tuple(image_features.shape)} "
                         f"and {tuple(class_embeddings.shape)}")
    logits = logit_scale * image_features.float() @ class_embeddings.float().T  # [N, C]
    return logits.softmax(dim=1)


def top_k_labels(probabilities: torch.Tensor, labels: tuple[str, ...], k: int) -> list[list[tuple[str, float]]]:
    """Per row of probabilities [N, C], the k most probable (label, probability), most probable first."""
    if not 1 <= k <= len(labels):
        raise ValueError(f"--top-k must be in [1, {len(labels)}] for {len(labels)} labels, got {k}")
    values, indices = probabilities.topk(k, dim=1)
    return [[(labels[index], float(value)) for value, index in zip(row_values.tolist(), row_indices.tolist())]
            for row_values, row_indices in zip(values, indices)]
