"""Zero-shot classification: class embeddings from prompt templates, and accuracy over a dataset.

The classifier follows open_clip: each class is embedded through every template, the template
embeddings are L2-normalised, averaged, and the mean is normalised again. An image is assigned the
class whose embedding has the highest cosine similarity with the normalised image embedding.

Templates hold `{}` (cliplab) or `{c}` (CLIP_benchmark) where the class name goes, or are callables
name -> prompt. The metrics of `ZeroShotResult.benchmark_metrics` are CLIP_benchmark's
(`classification_metrics.py`); the same result serves `cliplab benchmark`, `cliplab eval` and the
evaluation during training.

Shape convention: cliplab's classifier is [C, E], one row per class (`zero_shot_classifier`), and
`logits = image_features @ classifier.T`. open_clip's `build_zero_shot_classifier` returns [E, C]
(`logits = image_features @ classifier`); the function of that name here does the same, for code
that migrates unchanged. `zero_shot_evaluate` takes [C, E] and refuses an [E, C] one by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F

from cliplab.eval.classification_metrics import classification_metrics, top_k_accuracies
from cliplab.eval.embeddings import ProgressCounter, counted_batches, encode_texts
from cliplab.eval.model_mode import inference_mode, model_device, model_dtype

Template = str | Callable[[str], str]


def zero_shot_classifier(
    model: torch.nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    classnames: Sequence[str],
    templates: Sequence[Template],
    device: torch.device | str | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Class embeddings [C, E] float32, each row of unit L2 norm.

    model: exposes `encode_text(tokens[N, T] long, normalize=False) -> [N, E]` (pass the bare model,
    not a DDP wrapper; normalize is passed, since CoCa's default is True); tokenizer: list of N strings -> LongTensor[N, T]; classnames: C names; templates:
    strings with one "{}" for the class name, or callables name -> prompt; device: where the text
    tower runs (default: the model's device); batch_size: prompts per forward.
    Runs without gradients with the model in eval mode; its previous train/eval mode is restored.
    """
    prompts = class_prompts(classnames, templates)  # C * K prompts, class-major
    device = torch.device(device) if device is not None else model_device(model)
    template_embeddings = encode_texts(model, tokenizer, prompts, batch_size=batch_size, device=device)  # unit rows
    per_template = template_embeddings.view(len(classnames), len(templates), -1)  # [C, K, E]
    return F.normalize(per_template.mean(dim=1), dim=-1).to(device)


def build_zero_shot_classifier(
    model: torch.nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    classnames: Sequence[str],
    templates: Sequence[Template],
    num_classes_per_batch: int | None = 10,
    device: torch.device | str | None = None,
    use_tqdm: bool = False,
) -> torch.Tensor:
    """open_clip's layout: class embeddings as columns, [E, C] float32 (the transpose of
    `zero_shot_classifier`). num_classes_per_batch: classes whose prompts go through one forward
    (None: all); use_tqdm is accepted for open_clip's signature and shows nothing."""
    del use_tqdm
    per_batch = len(classnames) if num_classes_per_batch is None else num_classes_per_batch
    batch_size = max(1, per_batch * len(templates))
    return zero_shot_classifier(model, tokenizer, classnames, templates, device=device, batch_size=batch_size).T


def check_classifier_shape(classifier: torch.Tensor, num_classes: int | None, embed_dim: int | None) -> None:
    """ValueError unless classifier is [C, E] (C = num_classes, E = embed_dim where known); an
    [E, C] classifier (open_clip's layout) is named as such."""
    if not isinstance(classifier, torch.Tensor) or classifier.dim() != 2 or classifier.shape[0] == 0:
        raise ValueError(f"classifier must be [C, E] with C >= 1, got shape {tuple(getattr(classifier, 'shape', ()))}")
    rows, columns = classifier.shape
    transposed = (num_classes is not None and rows != num_classes and columns == num_classes) or (
        embed_dim is not None and columns != embed_dim and rows == embed_dim)
    if transposed:
        raise ValueError(f"classifier has shape {tuple(classifier.shape)}: that is open_clip's [E, C] layout "
                         f"(build_zero_shot_classifier); zero_shot_evaluate takes cliplab's [C, E] "
                         "(zero_shot_classifier): pass classifier.T")
    if num_classes is not None and rows != num_classes:
        raise ValueError(f"classifier has {rows} classes but classnames has {num_classes} names")
    if embed_dim is not None and columns != embed_dim:
        raise ValueError(f"classifier rows have {columns} dimensions but the model embeds into {embed_dim}")


def class_prompts(classnames: Sequence[str], templates: Sequence[Template]) -> list[str]:
    """The C * K prompts, class-major: every template for class 0, then for class 1, ..."""
    if isinstance(classnames, str) or len(classnames) == 0:
        raise ValueError(f"classnames must be a non-empty sequence of strings, got {classnames!r}")
    if isinstance(templates, str) or len(templates) == 0:
        raise ValueError(f"templates must be a non-empty sequence of templates, got {templates!r}")
    for template in templates:
        if isinstance(template, str) and "{}" not in template and "{c}" not in template:
            raise ValueError(f"template {template!r} has no '{{}}' (or '{{c}}') placeholder for the class name")
        if not isinstance(template, str) and not callable(template):
            raise ValueError(f"a template must be a string with '{{}}' or a callable, got {template!r}")
    return [fill_template(template, name) for name in classnames for template in templates]


def fill_template(template: Template, classname: str) -> str:
    """The prompt of `template` for `classname`: '{}' and '{c}' both take the name."""
    return template.format(classname, c=classname) if isinstance(template, str) else template(classname)


@dataclass(frozen=True)
class ZeroShotResult:
    """Zero-shot accuracy over `count` images.

    top1 / top5: fractions in [0, 1] (top5 is top-min(5, C)); per_class: classname -> accuracy of
    the images of that class (classes with no image are left out); confusion: LongTensor[C, C],
    row = true class, column = predicted class (the argmax); classnames: the C names in classifier
    order; mean_per_class_recall: the mean of `per_class` (balanced accuracy); acc5: top-5, NaN for
    fewer than 5 classes (CLIP_benchmark's rule).
    """

    top1: float
    top5: float
    per_class: dict[str, float]
    confusion: torch.Tensor
    count: int
    classnames: tuple[str, ...]
    mean_per_class_recall: float
    acc5: float

    def as_metrics(self) -> dict[str, Any]:
        """JSON-ready keys of an eval line in metrics.jsonl."""
        return {
            "zero_shot_top1": self.top1,
            "zero_shot_top5": self.top5,
            "zero_shot_mean_per_class_recall": self.mean_per_class_recall,
            "zero_shot_per_class": dict(self.per_class),
            "confusion_matrix": self.confusion.tolist(),
            "classnames": list(self.classnames),
            "zero_shot_count": self.count,
        }

    def benchmark_metrics(self) -> dict[str, float]:
        """CLIP_benchmark's `metrics` of a zero-shot classification result."""
        return {"acc1": self.top1, "acc5": self.acc5, "mean_per_class_recall": self.mean_per_class_recall}


def zero_shot_result(image_features: torch.Tensor, labels: torch.Tensor, classifier: torch.Tensor,
                     classnames: Sequence[str] | None = None) -> ZeroShotResult:
    """The zero-shot result of unit-norm image features [N, E] float with labels Long[N] in [0, C)
    against class embeddings `classifier` [C, E] (logits = 100 * features @ classifier.T, as
    CLIP_benchmark scales them: the same floats, so ties resolve alike)."""
    check_classifier_shape(classifier, None if classnames is None else len(classnames), image_features.shape[1])
    num_classes = classifier.shape[0]
    names = tuple(str(index) for index in range(num_classes)) if classnames is None else tuple(classnames)
    labels = labels.cpu().long()
    if labels.numel() == 0:
        raise ValueError("zero_shot_result got no images")
    _check_labels(labels, num_classes)
    logits = (100.0 * image_features.float()) @ classifier.to(device=image_features.device,
                                                              dtype=torch.float32).T  # [N, C]
    logits = logits.cpu()
    metrics = classification_metrics(logits, labels, top5_defined=num_classes >= 5)
    confusion = confusion_matrix(labels, logits.argmax(dim=1), num_classes)
    top5 = metrics["acc5"] if num_classes >= 5 else top_k_accuracies(logits, labels, (num_classes,))[0]
    return ZeroShotResult(top1=metrics["acc1"], top5=top5, per_class=per_class_accuracy(confusion, names),
                          confusion=confusion, count=int(labels.numel()), classnames=names,
                          mean_per_class_recall=metrics["mean_per_class_recall"], acc5=metrics["acc5"])


def zero_shot_evaluate(
    model: torch.nn.Module,
    classifier: torch.Tensor,
    batches: Iterable[Any],
    classnames: Sequence[str] | None = None,
    device: torch.device | str | None = None,
    max_samples: int | None = None,
    progress: ProgressCounter | None = None,
) -> ZeroShotResult:
    """Zero-shot accuracy of `model` with class embeddings `classifier` [C, E] over `batches`
    (an [E, C] classifier, open_clip's layout, is refused with a ValueError saying so).

    batches: iterable of batches holding `images` Float[B, 3, H, W] and `labels` Long[B] in [0, C),
    as a mapping with those keys, an object with those attributes, or an (images, labels) pair;
    classnames: C names for `per_class` (default "0".."C-1"); device: where the image tower runs
    (default: the model's device); max_samples: stop after this many images (None: all); progress:
    advanced by each batch's image count. Runs without gradients with the model in eval mode; its previous mode is restored.
    """
    config = getattr(model, "config", None)
    check_classifier_shape(classifier, None if classnames is None else len(classnames),
                           getattr(config, "embed_dim", None))
    num_classes = classifier.shape[0]
    device = torch.device(device) if device is not None else model_device(model)
    dtype = model_dtype(model)
    features, seen_labels = [], []
    with inference_mode(model):
        for images, labels in counted_batches(map(batch_images_and_labels, batches), max_samples, progress):
            _check_labels(labels, num_classes)
            image_features = model.encode_image(images.to(device=device, dtype=dtype), normalize=False)
            features.append(F.normalize(image_features.float(), dim=-1))
            seen_labels.append(labels.cpu().long())
    if sum(len(labels) for labels in seen_labels) == 0:
        raise ValueError("zero_shot_evaluate got no images: the batches were empty")
    return zero_shot_result(torch.cat(features), torch.cat(seen_labels), classifier.to(device), classnames)


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """LongTensor[C, C] counting (true, predicted) pairs; labels, predictions: Long[B] in [0, C)."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_accuracy(confusion: torch.Tensor, classnames: Sequence[str]) -> dict[str, float]:
    """classname -> diagonal / row sum of `confusion` [C, C], for classes whose row sum is > 0."""
    totals = confusion.sum(dim=1)
    return {
        name: float(confusion[index, index]) / float(totals[index])
        for index, name in enumerate(classnames)
        if totals[index] > 0
    }


def batch_images_and_labels(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [B, 3, H, W], labels [B]) of a mapping, an object with attributes, or a pair."""
    if isinstance(batch, Mapping):
        if "images" not in batch or "labels" not in batch:
            raise ValueError(f"a batch mapping needs keys 'images' and 'labels', got keys {sorted(batch)}")
        return batch["images"], batch["labels"]
    if hasattr(batch, "images") and hasattr(batch, "labels"):
        return batch.images, batch.labels
    if isinstance(batch, (tuple, list)) and len(batch) == 2:
        return batch[0], batch[1]
    raise ValueError(
        "a batch must be a mapping with 'images' and 'labels', an object with those attributes, or an "
        f"(images, labels) pair; got {type(batch).__name__}"
    )


def _check_labels(labels: torch.Tensor, num_classes: int) -> None:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(
            f"labels must lie in [0, {num_classes}) for a {num_classes}-class classifier, got values in "
            f"[{int(labels.min())}, {int(labels.max())}] (label -1 marks an unlabelled sample)"
        )

