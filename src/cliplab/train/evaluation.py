"""Evaluation during training: zero-shot classification and image-text retrieval (cliplab.eval).

Zero-shot runs on the test split of `eval.zeroshot_dataset` (--zeroshot-dataset: any dataset
`cliplab benchmark` reads, with its class names and templates), by default on the built-in
Fashion-MNIST test split when training on it, none otherwise. It takes the path `cliplab benchmark`
takes: `eval.split_features.encode_split_images` for the image features, `zero_shot_classifier`
and `zero_shot_result` for the class embeddings and the metrics (top-1, top-5, mean per-class
recall, per class, confusion). Retrieval uses the first `retrieval_num_samples` image-caption pairs
of the evaluation data (val data, or the captioned Fashion-MNIST test split) through
`cliplab.eval.retrieval.evaluate_retrieval`, the path `cliplab eval` takes. Runs on the main
process only, inside `torch.random.fork_rng` so that evaluating never changes the training RNG
stream.

A run with an EMA of its weights (`ema`) evaluates the model, then the model with the EMA's
averages in place (`ema.weights_swapped`), into one record: the EMA's metrics under the same keys
prefixed `ema/` (`ema/zero_shot_top1`, ...).

`Evaluator` owns the rule of when an evaluation is due and its agreement across ranks.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from cliplab.data import DataConfig
from cliplab.data.benchmark import BenchmarkSplit, NamedList, open_benchmark_dataset
from cliplab.data.benchmark.class_names import resolve_classnames, resolve_templates
from cliplab.data.loader import build_eval_loader, build_map_dataset
from cliplab.data.samples import MapDataset
from cliplab.data.sources import data_source
from cliplab.distributed.agreement import run_on_main
from cliplab.errors import UserError
from cliplab.eval import zero_shot_classifier
from cliplab.eval.retrieval import evaluate_retrieval
from cliplab.eval.split_features import ImageEncoder, encode_split_images
from cliplab.eval.zero_shot import zero_shot_result
from cliplab.train.config import EvalConfig, has_retrieval_data
from cliplab.train.state import TrainState
from cliplab.train.step.ema import weights_swapped

ZERO_SHOT_SPLIT = "test"
EMA_METRICS_PREFIX = "ema/"


@dataclass(frozen=True)
class ZeroShotData:
    """The labelled images zero-shot runs on, with the class names and templates it uses."""

    split: BenchmarkSplit
    classnames: NamedList
    templates: NamedList


def open_zero_shot_data(data_config: DataConfig, eval_config: EvalConfig) -> ZeroShotData | None:
    """The test split of `eval.zeroshot_dataset`, else of the training data's own benchmark dataset
    when its source has one with classes (`DataSource.zero_shot`: Fashion-MNIST's), else None; its class names and templates resolved and checked against its labels (a UserError here
    names --zeroshot-dataset)."""
    location = eval_config.zeroshot_dataset
    source = data_source(data_config.dataset_type)
    if location is None and source.zero_shot is None:
        return None
    try:
        dataset = source.zero_shot(data_config) if location is None else open_benchmark_dataset(location)
        split = dataset.split(ZERO_SHOT_SPLIT)
        if split.labels is None:
            raise UserError(f"{split.where} has no labels to classify")
        classnames, templates = resolve_classnames(dataset), resolve_templates(dataset)
        split.check_labels(len(classnames.values), classnames.source)
    except UserError as error:
        if location is None:
            raise
        raise UserError(f"--zeroshot-dataset {location} (eval.zeroshot_dataset): {error}") from None
    return ZeroShotData(split, classnames, templates)


def open_evaluation_data(data_config: DataConfig) -> MapDataset | None:
    """The evaluation dataset, opened once (its manifest read, its files found); None for webdataset
    shards, which are only checked to exist, and without retrieval data. A UserError here names
    --val-data when it is set."""
    if not has_retrieval_data(data_config):
        return None
    source = data_source(data_config.dataset_type)
    try:
        if source.iterable is not None:
            source.check(data_config.val_data)
            return None
        return build_map_dataset(data_config, train=False)
    except UserError as error:
        if data_config.val_data is None:
            raise
        raise UserError(f"--val-data {data_config.val_data} (data.val_data, read by the evaluation): {error}") from None


def zero_shot_metrics(model: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor], data: ZeroShotData, *,
                      eval_config: EvalConfig, transform: Callable, device: torch.device, workers: int,
                      autocast: Callable[[], contextlib.AbstractContextManager]) -> dict[str, Any]:
    """The zero-shot part of an eval record (`ZeroShotResult.as_metrics`) on the first
    `zeroshot_num_samples` images of `data`."""
    names = data.classnames.values
    with autocast():
        classifier = zero_shot_classifier(model, tokenizer, names, data.templates.values, device=device)
    encoder = ImageEncoder(model, transform, "run", device, autocast)
    features = encode_split_images(data.split, [encoder], batch_size=eval_config.batch_size, workers=workers,
                                   limit=eval_config.zeroshot_num_samples)[0]
    labels = torch.tensor(data.split.labels[:features.shape[0]], dtype=torch.long)
    return zero_shot_result(features, labels, classifier.float().cpu(), names).as_metrics()


def evaluate(model: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor], *, data_config: DataConfig,
             eval_config: EvalConfig, transform: Callable, device: torch.device,
             autocast: Callable[[], contextlib.AbstractContextManager],
             dataset: MapDataset | None = None, zero_shot: ZeroShotData | None = None) -> dict[str, Any]:
    """Zero-shot (on `zero_shot`, from `open_zero_shot_data`) and retrieval metrics of the unwrapped
    `model` (on `dataset` when one was opened with `open_evaluation_data`).

    Returns the JSON-ready part of an eval record: zero_shot_top1/top5/mean_per_class_recall/
    per_class, confusion_matrix, classnames, zero_shot_count, the retrieval keys
    (image_to_text_R@1, ...) and retrieval_count.
    """
    record: dict[str, Any] = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        workers = min(data_config.loader_workers(), 2)
        if zero_shot is not None:
            record.update(zero_shot_metrics(model, tokenizer, zero_shot, eval_config=eval_config, transform=transform,
                                            device=device, workers=workers, autocast=autocast))
        if has_retrieval_data(data_config):
            loader = build_eval_loader(data_config, transform=transform, tokenize=tokenizer,
                                       batch_size=eval_config.batch_size, workers=workers, dataset=dataset)[0]
            with autocast():
                metrics, count = evaluate_retrieval(model, loader, device=device,
                                                    max_samples=eval_config.retrieval_num_samples)
            record.update(metrics, retrieval_count=count)
    return record


class Evaluator:
    """Evaluates the run's model when due: every `zeroshot_frequency` epochs, and at the end of a run
    with evaluation data (`evaluates_at_end`), at most once per step.

    The evaluation runs on rank 0 (`run_on_main`): its failure is raised on every rank, which would
    otherwise wait for rank 0 at the next collective until the process-group timeout. A sharded
    model is first gathered whole onto rank 0 by `gather_model` (a collective; None: `model` is
    whole already). Its record is logged there and returned on every rank; `last_record` keeps the
    latest. The evaluation data is opened at start-up (a collective), so that a missing or
    unreadable --val-data stops the run before it trains rather than after. `restore(record)` hands
    it the last evaluation an earlier attempt of the run logged. ema_averages: the collective that
    gives rank 0 the EMA's averages whole (`WeightEma.whole_averages`; None: the run has no EMA).
    """

    def __init__(self, eval_config: EvalConfig, data_config: DataConfig, *, evaluates_at_end: bool,
                 model: nn.Module, tokenizer: Callable, transform: Callable, device: torch.device,
                 autocast: Callable[[], contextlib.AbstractContextManager], log: Callable[[dict], None],
                 gather_model: Callable[[], nn.Module | None] | None = None,
                 ema_averages: Callable[[], dict[str, torch.Tensor] | None] | None = None):
        self.eval_config, self.data_config = eval_config, data_config
        self.gather_model, self.ema_averages = gather_model, ema_averages
        self.evaluates_at_end = evaluates_at_end
        self.model, self.tokenizer, self.transform = model, tokenizer, transform
        self.device, self.autocast, self.log = device, autocast, log
        self.last_record: dict[str, Any] | None = None
        self.last_step = -1
        self.dataset: MapDataset | None = None
        self.zero_shot: ZeroShotData | None = None
        if evaluates_at_end or eval_config.zeroshot_frequency:
            run_on_main(self._open_data)

    def _open_data(self) -> None:
        self.dataset = open_evaluation_data(self.data_config)
        self.zero_shot = open_zero_shot_data(self.data_config, self.eval_config)

    def restore(self, record: dict[str, Any] | None) -> None:
        """Take `record` (an eval record, or None) as the latest evaluation done."""
        if record is not None:
            self.last_record, self.last_step = record, record["step"]

    def evaluate_if_due(self, state: TrainState, *, epoch_done: bool, finished: bool) -> None:
        frequency = self.eval_config.zeroshot_frequency
        periodic = epoch_done and frequency and state.epoch % frequency == 0
        if (periodic or (finished and self.evaluates_at_end)) and self.last_step != state.step:
            self._evaluate(state)

    def _evaluate(self, state: TrainState) -> None:
        model = self.model if self.gather_model is None else self.gather_model()
        averages = self.ema_averages() if self.ema_averages is not None else None
        self.last_record = run_on_main(lambda: self._evaluate_and_log(state, model, averages))
        self.last_step = state.step

    def _evaluate_and_log(self, state: TrainState, model: nn.Module,
                          averages: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        metrics = self._metrics(model)
        if averages is not None:
            with weights_swapped(model, averages):
                metrics.update({f"{EMA_METRICS_PREFIX}{key}": value for key, value in self._metrics(model).items()})
        record = {"kind": "eval", "step": state.step, "epoch": state.epoch, **metrics}
        self.log(record)
        return record

    def _metrics(self, model: nn.Module) -> dict[str, Any]:
        return evaluate(model, self.tokenizer, data_config=self.data_config, eval_config=self.eval_config,
                        transform=self.transform, device=self.device, autocast=self.autocast, dataset=self.dataset,
                        zero_shot=self.zero_shot)
