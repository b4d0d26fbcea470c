"""`cliplab benchmark`: CLIP_benchmark 1.6.2's tasks on one dataset for several models at once.

Tasks (what each needs of the dataset):
  zeroshot_classification  labels in the test split, class names and templates (`class_names.py`)
  zeroshot_retrieval       captions in the test split (several per image allowed)
  linear_probe             labels in the train and test splits (a validation split, when named,
                           for the weight-decay search)
`all` is every task the dataset supports; naming one it cannot support is a UserError naming its
file. Order of work: each split is read once, its images decoded once and shared by every model
and task (`split_features.encode_split_images`); then per model the text side (class embeddings,
caption embeddings) and the metrics. Linear-probe features come from the on-disk cache where a
previous run left them (`feature_cache.py`) and go there after being computed.

Metrics, as CLIP_benchmark computes them: `ZeroShotResult.benchmark_metrics` (acc1, acc5,
mean_per_class_recall), `retrieval.caption_retrieval_recall` (image_retrieval_recall@k,
text_retrieval_recall@k), `linear_probe.linear_probe` (lp_acc1, lp_acc5, lp_mean_per_class_recall,
weight_decay, ...). Each result is CLIP_benchmark's JSON record (`benchmark_results.py`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable

import torch

from cliplab.data.benchmark import BenchmarkDataset, BenchmarkSplit, NamedList
from cliplab.data.benchmark.class_names import resolve_classnames, resolve_templates
from cliplab.errors import InvalidInputError, UserError
from cliplab.eval.benchmark_tasks import ALL, LINEAR_PROBE, RETRIEVAL, TASKS, ZERO_SHOT
from cliplab.eval.embeddings import ProgressCounter, encode_texts
from cliplab.eval.feature_cache import FeatureCache
from cliplab.eval.linear_probe import Features, LinearProbeConfig, linear_probe
from cliplab.eval.retrieval import caption_retrieval_recall
from cliplab.eval.split_features import Autocast, ImageEncoder, encode_split_images
from cliplab.eval.zero_shot import zero_shot_classifier, zero_shot_result


ProgressFactory = Callable[[str, int, str], Any]  # (what, total, unit) -> a Progress with update / close


@dataclass(frozen=True)
class BenchmarkModel:
    """A model to benchmark. name / pretrained: CLIP_benchmark's `model` / `pretrained` fields;
    tokenizer: texts -> Long[N, T]; preprocess_key: equal for equal preprocessing; cache_key:
    what identifies its features on disk (None: never cached)."""

    name: str
    pretrained: str
    model: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable[[list[str]], torch.Tensor]
    device: torch.device
    preprocess_key: Hashable
    autocast: Autocast = contextlib.nullcontext
    cache_key: dict | None = None

    @property
    def image_encoder(self) -> ImageEncoder:
        return ImageEncoder(self.model, self.preprocess, self.preprocess_key, self.device, self.autocast)


@dataclass(frozen=True, kw_only=True)
class BenchmarkOptions:
    """tasks: names of TASKS (or ALL); split / train_split / val_split: the splits to read (no
    validation split: weight decay 0, as CLIP_benchmark without --val_split); recall_k: the k of
    recall@k; classnames / templates: a file or built-in set name, before the dataset's own;
    feature_root: the linear-probe feature cache (None: no cache)."""

    tasks: tuple[str, ...] = (ALL,)
    split: str = "test"
    train_split: str = "train"
    val_split: str | None = None
    recall_k: tuple[int, ...] = (1, 5, 10)
    batch_size: int = 64
    workers: int = 0
    language: str = "en"
    classnames: str | None = None
    templates: str | None = None
    probe: LinearProbeConfig = field(default_factory=LinearProbeConfig)
    feature_root: Path | None = None

    def __post_init__(self) -> None:
        unknown = [task for task in self.tasks if task not in TASKS + (ALL,)]
        if unknown or not self.tasks:
            raise InvalidInputError(f"--task must be one of {', '.join(TASKS + (ALL,))}, got {unknown or 'none'}")
        if not self.recall_k or any(k < 1 for k in self.recall_k):
            raise InvalidInputError(f"--recall-k must list positive integers, got {list(self.recall_k)}")
        if self.batch_size < 1:
            raise InvalidInputError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise InvalidInputError(f"--workers must be >= 0, got {self.workers}")


def supported_tasks(dataset: BenchmarkDataset, options: BenchmarkOptions) -> tuple[str, ...]:
    """The tasks `dataset` supports (module docstring); opens its test split."""
    test = dataset.split(options.split)
    labelled = test.labels is not None and not dataset.retrieval_only
    supported = []
    if labelled:
        supported.append(ZERO_SHOT)
    if test.captions is not None:
        supported.append(RETRIEVAL)
    if labelled and dataset.has_split(options.train_split):
        supported.append(LINEAR_PROBE)
    return tuple(supported)


def resolve_tasks(dataset: BenchmarkDataset, options: BenchmarkOptions) -> tuple[str, ...]:
    """The tasks to run: ALL -> every supported one; a named task the dataset cannot support ->
    a UserError naming what it lacks and where."""
    supported = supported_tasks(dataset, options)
    if ALL in options.tasks:
        if not supported:
            raise UserError(f"{dataset.location}: no task to run (its {options.split!r} split has neither labels nor "
                            "captions)")
        return supported
    test = dataset.split(options.split)
    for task in options.tasks:
        if task in supported:
            continue
        if task == RETRIEVAL:
            raise UserError(f"--task {task} needs captions, but {test.where} has labels only")
        if task == LINEAR_PROBE and test.labels is not None and not dataset.retrieval_only:
            raise UserError(f"--task {task} needs a {options.train_split!r} split to train on; {dataset.location} has "
                            f"{list(dataset.split_names)} (--train-split names another)")
        raise UserError(f"--task {task} needs labels, but {test.where} has captions only"
                        + (" (its dataset_type.txt says retrieval)" if dataset.retrieval_only else ""))
    return tuple(dict.fromkeys(options.tasks))


@dataclass(frozen=True)
class ZeroShotInputs:
    classnames: NamedList
    templates: NamedList


def zero_shot_inputs(dataset: BenchmarkDataset, test: BenchmarkSplit, options: BenchmarkOptions) -> ZeroShotInputs:
    """The class names and templates, checked against the test split's labels."""
    classnames = resolve_classnames(dataset, choice=options.classnames, language=options.language)
    templates = resolve_templates(dataset, choice=options.templates, language=options.language)
    test.check_labels(len(classnames.values), classnames.source)
    return ZeroShotInputs(classnames, templates)


def run_benchmark(models: list[BenchmarkModel], dataset: BenchmarkDataset, options: BenchmarkOptions, *,
                  progress: ProgressFactory | None = None, note: Callable[[str], None] = print) -> list[dict]:
    """Every (model, task) result of `dataset`: {"model", "pretrained", "task", "metrics"} in model
    order, tasks in TASKS order (`benchmark_results.result_record` adds the dataset fields)."""
    tasks = resolve_tasks(dataset, options)
    test = dataset.split(options.split)
    inputs = zero_shot_inputs(dataset, test, options) if ZERO_SHOT in tasks else None
    if inputs is not None:
        note(f"zero-shot: {len(inputs.classnames.values)} classes ({inputs.classnames.source}), "
             f"{len(inputs.templates.values)} templates ({inputs.templates.source})")
    probe_splits = _probe_splits(dataset, options) if LINEAR_PROBE in tasks else {}
    caches = [None if options.feature_root is None or model.cache_key is None
              else FeatureCache(options.feature_root, model.cache_key) for model in models]
    needs_test = ZERO_SHOT in tasks or RETRIEVAL in tasks
    features = _all_features(models, dataset, test, probe_splits, caches, needs_test, options, progress, note)
    results = []
    for index, model in enumerate(models):
        for task in tasks:
            if task == ZERO_SHOT:
                metrics = _zero_shot(model, features[index][test.name], test, inputs, options)
            elif task == RETRIEVAL:
                metrics = _retrieval(model, features[index][test.name], test, options, progress)
            else:
                metrics = _linear_probe(model, features[index], probe_splits, options)
            results.append({"model": model.name, "pretrained": model.pretrained, "task": task, "metrics": metrics})
            note(f"{model.name} {task}: " + ", ".join(f"{key} {value:.4f}" for key, value in metrics.items()
                                                          if isinstance(value, float)))
    return results


def _probe_splits(dataset: BenchmarkDataset, options: BenchmarkOptions) -> dict[str, BenchmarkSplit]:
    """{"train": ..., "val": ... (when named), "test": ...} for the linear probe."""
    splits = {"train": dataset.split(options.train_split), "test": dataset.split(options.split)}
    if options.val_split is not None:
        splits["val"] = dataset.split(options.val_split)
    for role, split in splits.items():
        if split.labels is None:
            raise UserError(f"--task {LINEAR_PROBE} needs labels, but the {role} split {split.where} has captions only")
    return splits


def _all_features(models: list[BenchmarkModel], dataset: BenchmarkDataset, test: BenchmarkSplit,
                  probe_splits: dict[str, BenchmarkSplit], caches: list[FeatureCache | None], needs_test: bool,
                  options: BenchmarkOptions, progress: ProgressFactory | None,
                  note: Callable[[str], None]) -> list[dict[str, torch.Tensor]]:
    """features[model][split name] -> [N, E] for every split a task needs: one pass per split over
    the models whose features are neither cached (the probe's splits) nor computed yet."""
    features: list[dict[str, torch.Tensor]] = [{} for _ in models]
    cached_splits = {split.name for split in probe_splits.values()}
    wanted = {split.name: split for split in probe_splits.values()}
    if needs_test:
        wanted[test.name] = test
    for name, split in wanted.items():
        missing = []
        for index, model in enumerate(models):
            cache = caches[index] if name in cached_splits else None
            cached = cache.load(dataset, split) if cache is not None else None
            if cached is not None:
                note(f"{model.name}: {name} features from the cache {cache.directory(dataset, split)}")
                features[index][name] = cached.features
            else:
                missing.append(index)
        if not missing:
            continue
        counter = progress(f"{name} images", len(split), "img") if progress is not None else None
        try:
            computed = encode_split_images(split, [models[index].image_encoder for index in missing],
                                           batch_size=options.batch_size, workers=options.workers, progress=counter)
        finally:
            if counter is not None:
                counter.close()
        for index, values in zip(missing, computed):
            features[index][name] = values
            if caches[index] is not None and name in cached_splits:
                caches[index].save(dataset, split, Features(values, torch.tensor(split.labels, dtype=torch.long)))
    return features


def _zero_shot(model: BenchmarkModel, image_features: torch.Tensor, test: BenchmarkSplit, inputs: ZeroShotInputs,
               options: BenchmarkOptions) -> dict[str, float]:
    with torch.inference_mode(), model.autocast():
        classifier = zero_shot_classifier(model.model, model.tokenizer, inputs.classnames.values,
                                          inputs.templates.values, device=model.device, batch_size=options.batch_size)
    labels = torch.tensor(test.labels, dtype=torch.long)
    return zero_shot_result(image_features, labels, classifier.float().cpu(), inputs.classnames.values
                            ).benchmark_metrics()


def _retrieval(model: BenchmarkModel, image_features: torch.Tensor, test: BenchmarkSplit, options: BenchmarkOptions,
               progress: ProgressFactory | None) -> dict[str, float]:
    texts = [text for captions in test.captions for text in captions]
    image_of_text = torch.tensor([image for image, captions in enumerate(test.captions) for _ in captions],
                                 dtype=torch.long)
    too_large = [k for k in options.recall_k if k > min(len(test), len(texts))]
    if too_large:
        raise UserError(f"--recall-k {too_large[0]}: {test.where} has {len(test)} images and {len(texts)} captions; "
                        f"k must not exceed either")
    counter: ProgressCounter | None = progress("captions", len(texts), "text") if progress is not None else None
    try:
        with torch.inference_mode(), model.autocast():
            text_features = encode_texts(model.model, model.tokenizer, texts, batch_size=options.batch_size,
                                         device=model.device, progress=counter)
    finally:
        if counter is not None:
            counter.close()
    return caption_retrieval_recall(image_features, text_features, image_of_text, options.recall_k)


def _linear_probe(model: BenchmarkModel, features: dict[str, torch.Tensor], probe_splits: dict[str, BenchmarkSplit],
                  options: BenchmarkOptions) -> dict[str, Any]:
    rows = {role: Features(features[split.name], torch.tensor(split.labels, dtype=torch.long))
            for role, split in probe_splits.items()}
    return linear_probe(rows["train"], rows["test"], rows.get("val"), config=options.probe, device=model.device,
                        autocast=model.autocast)
