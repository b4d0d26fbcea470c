"""Evaluation during training: zero-shot classification and image-text retrieval (cliplab.eval).

Zero-shot needs class names and prompt templates: the built-in Fashion-MNIST ones when training on
it (on its test split), none otherwise (then only retrieval runs). Retrieval uses the first
`retrieval_num_samples` image-caption pairs of the evaluation data (val data, or the captioned
Fashion-MNIST test split) through `cliplab.eval.retrieval.evaluate_retrieval`, the path
`cliplab eval` takes. Runs on the main process only, inside `torch.random.fork_rng` so that
evaluating never changes the training RNG stream.

`Evaluator` owns the rule of when an evaluation is due and its agreement across ranks.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from cliplab.data import DataConfig
from cliplab.data.loader import build_eval_loader, build_map_dataset
from cliplab.data.samples import MapDataset
from cliplab.data.sources import data_source
from cliplab.distributed.agreement import run_on_main
from cliplab.errors import UserError
from cliplab.eval import zero_shot_classifier, zero_shot_evaluate
from cliplab.eval.retrieval import evaluate_retrieval
from cliplab.train.config import EvalConfig
from cliplab.train.state import TrainState


@dataclass(frozen=True)
class ZeroShotTask:
    classnames: tuple[str, ...]
    templates: tuple[str, ...]


def zero_shot_task(data_config: DataConfig) -> ZeroShotTask | None:
    """The class names and templates of the data's source (Fashion-MNIST's); None for data without
    classes."""
    classes = data_source(data_config.dataset_type).zero_shot()
    return None if classes is None else ZeroShotTask(classes.classnames, classes.templates)


def open_evaluation_data(data_config: DataConfig) -> MapDataset | None:
    """The evaluation dataset, opened once (its manifest read, its files found); None for webdataset
    shards, which are only checked to exist. A UserError here names --val-data when it is set."""
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


def evaluate(model: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor], *, data_config: DataConfig,
             eval_config: EvalConfig, transform: Callable, device: torch.device,
             autocast: Callable[[], contextlib.AbstractContextManager],
             dataset: MapDataset | None = None) -> dict[str, Any]:
    """Zero-shot (when the data has classes) and retrieval metrics of the unwrapped `model`
    (on `dataset` when one was opened with `open_evaluation_data`).

    Returns the JSON-ready part of an eval record: zero_shot_top1/top5/per_class, confusion_matrix,
    classnames, zero_shot_count, the retrieval keys (image_to_text_R@1, ...) and retrieval_count.
    """
    record: dict[str, Any] = {}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        task = zero_shot_task(data_config)
        workers = min(data_config.workers, 2)

        def loader():
            return build_eval_loader(data_config, transform=transform, tokenize=tokenizer,
                                     batch_size=eval_config.batch_size, workers=workers, dataset=dataset)[0]

        with autocast():
            if task is not None:
                classifier = zero_shot_classifier(model, tokenizer, task.classnames, task.templates, device=device)
                result = zero_shot_evaluate(model, classifier, loader(), classnames=task.classnames, device=device,
                                            max_samples=eval_config.zeroshot_num_samples)
                record.update(result.as_metrics())
            metrics, count = evaluate_retrieval(model, loader(), device=device,
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
    it the last evaluation an earlier attempt of the run logged.
    """

    def __init__(self, eval_config: EvalConfig, data_config: DataConfig, *, evaluates_at_end: bool,
                 model: nn.Module, tokenizer: Callable, transform: Callable, device: torch.device,
                 autocast: Callable[[], contextlib.AbstractContextManager], log: Callable[[dict], None],
                 gather_model: Callable[[], nn.Module | None] | None = None):
        self.eval_config, self.data_config = eval_config, data_config
        self.gather_model = gather_model
        self.evaluates_at_end = evaluates_at_end
        self.model, self.tokenizer, self.transform = model, tokenizer, transform
        self.device, self.autocast, self.log = device, autocast, log
        self.last_record: dict[str, Any] | None = None
        self.last_step = -1
        self.dataset: MapDataset | None = None
        if evaluates_at_end or eval_config.zeroshot_frequency:
            run_on_main(self._open_data)

    def _open_data(self) -> None:
        self.dataset = open_evaluation_data(self.data_config)

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
        self.last_record = run_on_main(lambda: self._evaluate_and_log(state, model))
        self.last_step = state.step

    def _evaluate_and_log(self, state: TrainState, model: nn.Module) -> dict[str, Any]:
        metrics = evaluate(model, self.tokenizer, data_config=self.data_config, eval_config=self.eval_config,
                           transform=self.transform, device=self.device, autocast=self.autocast, dataset=self.dataset)
        record = {"kind": "eval", "step": state.step, "epoch": state.epoch, **metrics}
        self.log(record)
        return record
