"""Evaluation during training: zero-shot classification and image-text retrieval (cliplab.eval).

Zero-shot needs class names and prompt templates: the built-in Fashion-MNIST ones when training on
it (on its test split), none otherwise (then only retrieval runs). Retrieval uses the first
`retrieval_num_samples` image-caption pairs of the evaluation data (val data, or the captioned
Fashion-MNIST test split) with open_clip's get_clip_metrics definitions. Runs on the main process
only, inside `torch.random.fork_rng` so that evaluating never changes the training RNG stream.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cliplab.data import DataConfig
from cliplab.data.loader import build_eval_loader
from cliplab.eval import retrieval_metrics, zero_shot_classifier, zero_shot_evaluate
from cliplab.eval.model_mode import inference_mode
from cliplab.train.config import EvalConfig


@dataclass(frozen=True)
class ZeroShotTask:
    classnames: tuple[str, ...]
    templates: tuple[str, ...]


def zero_shot_task(data_config: DataConfig) -> ZeroShotTask | None:
    """Fashion-MNIST's class names and templates when evaluating on it; None for other data."""
    if data_config.dataset_type != "fashion-mnist":
        return None
    from cliplab.data.fashion_mnist import FASHION_MNIST_CLASSNAMES, FASHION_MNIST_TEMPLATES

    return ZeroShotTask(tuple(FASHION_MNIST_CLASSNAMES), tuple(FASHION_MNIST_TEMPLATES))


def _limited(batches, max_samples: int | None):
    """Yield batches until `max_samples` images have been yielded (the last one trimmed)."""
    seen = 0
    for batch in batches:
        if max_samples is not None and seen >= max_samples:
            return
        if max_samples is not None and seen + len(batch["labels"]) > max_samples:
            keep = max_samples - seen
            batch = {key: value[:keep] if isinstance(value, (torch.Tensor, list)) else value
                     for key, value in batch.items()}
        seen += len(batch["labels"])
        yield batch


def _retrieval(model: nn.Module, batches, num_samples: int, device: torch.device,
               autocast: Callable[[], contextlib.AbstractContextManager]) -> dict[str, float]:
    image_features, text_features = [], []
    with inference_mode(model), autocast():
        for batch in _limited(batches, num_samples):
            image_features.append(model.encode_image(batch["images"].to(device), normalize=True).float())
            text_features.append(model.encode_text(batch["tokens"].to(device), normalize=True).float())
    images, texts = torch.cat(image_features), torch.cat(text_features)
    scale = float(model.logit_scale.detach().exp()) if hasattr(model, "logit_scale") else 1.0
    return retrieval_metrics(images, texts, scale)


def evaluate(model: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor], *, data_config: DataConfig,
             eval_config: EvalConfig, transform: Callable, device: torch.device,
             autocast: Callable[[], contextlib.AbstractContextManager]) -> dict[str, Any]:
    """Zero-shot (when the data has classes) and retrieval metrics of the unwrapped `model`.

    Returns the JSON-ready part of an eval record: zero_shot_top1/top5/per_class, confusion_matrix,
    classnames, zero_shot_count, and the retrieval keys (image_to_text_R@1, ...).
    """
    record: dict[str, Any] = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        task = zero_shot_task(data_config)
        workers = min(data_config.workers, 2)
        loader, _ = build_eval_loader(data_config, transform=transform, tokenize=tokenizer,
                                      batch_size=eval_config.batch_size, workers=workers)
        if task is not None:
            with autocast():
                classifier = zero_shot_classifier(model, tokenizer, task.classnames, task.templates, device=device)
                result = zero_shot_evaluate(model, classifier, loader, classnames=task.classnames, device=device,
                                            max_samples=eval_config.zeroshot_num_samples)
            record.update(result.as_metrics())
            loader, _ = build_eval_loader(data_config, transform=transform, tokenize=tokenizer,
                                          batch_size=eval_config.batch_size, workers=workers)
        record.update(_retrieval(model, loader, eval_config.retrieval_num_samples, device, autocast))
    return record
