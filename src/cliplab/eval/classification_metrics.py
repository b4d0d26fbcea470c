"""Classification metrics of logits, with CLIP_benchmark 1.6.2's definitions.

  acc@k                 = fraction of samples whose label is among the k largest logits of its row
                          (torch.topk's choice among equal logits)
  mean_per_class_recall = mean over the classes that occur among the labels of (correct / count),
                          the prediction being the row's argmax: scikit-learn's balanced accuracy
  acc5                  = NaN when top-5 is undefined (CLIP_benchmark: fewer than 5 classes)
"""

from __future__ import annotations

import math

import torch


def top_k_accuracies(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...]) -> list[float]:
    """acc@k for each k of `ks`: logits [N, C] float, labels Long[N] in [0, C), 1 <= k <= C. One
    topk of the largest k serves every k, as in CLIP_benchmark (so ties resolve the same way)."""
    top = logits.topk(max(ks), dim=1).indices  # [N, max k], best first
    hits = top == labels.view(-1, 1)
    return [float(hits[:, :k].any(dim=1).sum()) / labels.numel() for k in ks]


def mean_per_class_recall(labels: torch.Tensor, predictions: torch.Tensor) -> float:
    """Balanced accuracy: labels, predictions: Long[N]; classes absent from `labels` are left out."""
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    correct = torch.zeros(classes.numel(), dtype=torch.float64)
    correct.index_add_(0, inverse, (predictions == labels).double())
    return float((correct / counts.double()).mean())


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, *, top5_defined: bool) -> dict[str, float]:
    """{"acc1", "acc5", "mean_per_class_recall"} of logits [N, C] and labels Long[N]; acc5 is NaN
    unless `top5_defined` (the caller applies CLIP_benchmark's rule for its task)."""
    if logits.dim() != 2 or labels.shape != (logits.shape[0],) or labels.numel() == 0:
        raise ValueError(f"need logits [N, C] and labels [N] with N >= 1, got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    labels = labels.long()
    accuracies = top_k_accuracies(logits, labels, (1, 5) if top5_defined else (1,))
    return {
        "acc1": accuracies[0],
        "acc5": accuracies[1] if top5_defined else math.nan,
        "mean_per_class_recall": mean_per_class_recall(labels, logits.argmax(dim=1)),
    }
