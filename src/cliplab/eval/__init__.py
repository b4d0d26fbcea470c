"""Evaluation and use of trained models: zero-shot classification, retrieval metrics, embeddings,
checkpoint resolution, training reports, `cliplab benchmark`. Every name is imported on first use
(`cliplab.lazy_exports`), so importing a module of this package does not import torch by itself."""

from __future__ import annotations

from cliplab.lazy_exports import exported_names, lazy_exports

# defining module -> its public names
_EXPORTS = {
    "cliplab.eval.retrieval": ("retrieval_metrics",),
    "cliplab.eval.zero_shot": ("ZeroShotResult", "zero_shot_classifier", "zero_shot_evaluate"),
}

__all__ = exported_names(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
