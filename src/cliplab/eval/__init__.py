"""Evaluation and use of trained models: zero-shot classification, retrieval metrics, embeddings,
checkpoint resolution, training reports."""

from cliplab.eval.retrieval import retrieval_metrics
from cliplab.eval.zero_shot import ZeroShotResult, zero_shot_classifier, zero_shot_evaluate

__all__ = ["ZeroShotResult", "retrieval_metrics", "zero_shot_classifier", "zero_shot_evaluate"]
