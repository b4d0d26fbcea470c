"""Linear probe: logistic regression on frozen image features, trained as CLIP_benchmark 1.6.2's
`linear_probe` trains it, so that its numbers are the same.

The algorithm (OpenAI's CLIP paper, A.3, with AdamW for L-BFGS):
1. The training rows: with the global RNG seeded with `seed`, a random permutation of the training
   features; with `fewshot_k` > 0, the first k of each class in that order (every class must have k).
2. A probe is `nn.Linear(E, C)` (C = largest training label + 1) made right after
   `torch.manual_seed(seed)`, trained `epochs` epochs on shuffled batches (torch's DataLoader
   shuffling, drawing from the same global RNG) with AdamW(lr, weight_decay) and cross-entropy, the
   learning rate set before every step to `lr * (1 + cos(pi * step / steps)) / 2`.
3. Weight decay: without a validation split, 0. With one, chosen on it by top-1 accuracy among
   `np.logspace(-6, 2, 97)`: first the 7 values of `np.logspace(-6, 2, 7)`, then around the best
   index i the values at i - s, i, i + s for s = 8, 4, 2, 1 (clipped to the grid). The best keeps
   its place unless another is strictly better, starting from index 0 at accuracy 0. Each decay is
   trained once (training is deterministic given the seed; CLIP_benchmark retrains the incumbent).
   The final probe trains on train + validation rows (train only in few-shot mode).
4. Test metrics: `lp_acc1`, `lp_acc5` (NaN when the largest test label is below 5), and
   `lp_mean_per_class_recall` (`classification_metrics.py`).

The global RNG is restored afterwards (`torch.random.fork_rng`): the seeding is local to the probe.
On a CPU, a probe whose steps are small (batch x features x classes <= SMALL_PROBE_MACS) trains on
one thread: handing such tiny products to several threads cost far more than the arithmetic (on
this project's shared 2-core machine, 43 ms against 0.5 ms per step); the thread count is restored.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler

from cliplab.errors import InvalidInputError
from cliplab.eval.classification_metrics import classification_metrics, top_k_accuracies

WEIGHT_DECAYS = np.logspace(-6, 2, num=97).tolist()
COARSE_WEIGHT_DECAYS = np.logspace(-6, 2, num=7).tolist()
FIRST_SPAN = 8
SMALL_PROBE_MACS = 1 << 22

Autocast = Callable[[], contextlib.AbstractContextManager]


@dataclass(frozen=True, kw_only=True)
class LinearProbeConfig:
    """CLIP_benchmark's `--fewshot_epochs`, `--fewshot_lr`, `--batch_size`, `--fewshot_k`, `--seed`."""

    epochs: int = 10
    lr: float = 0.1
    batch_size: int = 64
    fewshot_k: int = -1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise InvalidInputError(f"--fewshot-epochs must be >= 1, got {self.epochs}")
        if not self.lr > 0:
            raise InvalidInputError(f"--fewshot-lr must be > 0, got {self.lr}")
        if self.batch_size < 1:
            raise InvalidInputError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.fewshot_k == 0 or self.fewshot_k < -1:
            raise InvalidInputError(f"--fewshot-k must be -1 (all training images) or >= 1, got {self.fewshot_k}")


@dataclass(frozen=True)
class Features:
    """features: Float[N, E] (unit rows, CLIP_benchmark's normalize=True); labels: Long[N]."""

    features: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.numel()


class _Rows:
    """A "dataset" whose item for a list of row indices is that batch of (features, labels)."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[rows], self.labels[rows]


def shuffled_batches(rows: Features, batch_size: int) -> DataLoader:
    """Batches of `rows` in a fresh random order per pass, drawn as a shuffling DataLoader draws."""
    dataset = _Rows(rows.features, rows.labels)
    return DataLoader(dataset, batch_size=None,
                      sampler=BatchSampler(RandomSampler(range(len(dataset))), batch_size, drop_last=False))


def fit_probe(rows: Features, num_classes: int, *, weight_decay: float, config: LinearProbeConfig,
              device: torch.device, autocast: Autocast) -> torch.nn.Linear:
    """A linear probe trained on `rows` (step 2 of the module docstring)."""
    torch.manual_seed(config.seed)
    probe = torch.nn.Linear(rows.features.shape[1], num_classes).to(device)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=config.lr, weight_decay=weight_decay)
    loss_function = torch.nn.CrossEntropyLoss()
    batches = shuffled_batches(rows, config.batch_size)
    steps = config.epochs * len(batches)
    for epoch in range(config.epochs):
        for index, (features, labels) in enumerate(batches):
            step = index + epoch * len(batches)
            for group in optimizer.param_groups:
                group["lr"] = 0.5 * (1 + np.cos(np.pi * step / steps)) * config.lr
            optimizer.zero_grad()
            with autocast():
                loss = loss_function(probe(features.to(device)), labels.to(device))
            loss.backward()
            optimizer.step()
    return probe


def probe_logits(probe: torch.nn.Linear, rows: Features, *, batch_size: int, device: torch.device,
                 autocast: Autocast) -> torch.Tensor:
    """[N, C] float32 logits of `rows`, computed `batch_size` rows at a time."""
    outputs = []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            with autocast():
                outputs.append(probe(rows.features[start:start + batch_size].to(device)).float().cpu())
    return torch.cat(outputs)


def training_rows(train: Features, fewshot_k: int) -> Features:
    """Step 1 of the module docstring (the global RNG seeded by the caller)."""
    order = torch.randperm(len(train)).tolist()
    if fewshot_k < 0:
        return Features(train.features[order], train.labels[order])
    taken: dict[int, int] = {}
    rows = []
    for row in order:
        label = int(train.labels[row])
        taken.setdefault(label, 0)
        if taken[label] < fewshot_k:
            taken[label] += 1
            rows.append(row)
    short = {label: count for label, count in taken.items() if count != fewshot_k}
    if short:
        label, count = next(iter(short.items()))
        raise InvalidInputError(f"--fewshot-k {fewshot_k}: class {label} has only {count} training images "
                                f"({len(short)} classes have fewer than {fewshot_k})")
    return Features(train.features[rows], train.labels[rows])


def search_weight_decay(validation_accuracy: Callable[[float], float]) -> float:
    """The weight decay of step 3 of the module docstring; validation_accuracy(decay) -> top-1."""
    accuracies: dict[int, float] = {}

    def best_of(candidates: list[int]) -> int:
        best, best_accuracy = 0, 0.0
        for index in candidates:
            if index not in accuracies:
                accuracies[index] = validation_accuracy(WEIGHT_DECAYS[index])
            if accuracies[index] > best_accuracy:
                best, best_accuracy = index, accuracies[index]
        return best

    peak = best_of([index for index, decay in enumerate(WEIGHT_DECAYS) if decay in COARSE_WEIGHT_DECAYS])
    span = FIRST_SPAN
    while span > 0:
        peak = best_of([max(peak - span, 0), peak, min(peak + span, len(WEIGHT_DECAYS) - 1)])
        span //= 2
    return WEIGHT_DECAYS[peak]


@contextlib.contextmanager
def _threads(count: int | None):
    """torch's intra-op thread count set to `count` inside (None: unchanged), restored after."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def linear_probe(train: Features, test: Features, validation: Features | None = None, *,
                 config: LinearProbeConfig = LinearProbeConfig(), device: torch.device | str = "cpu",
                 autocast: Autocast = contextlib.nullcontext) -> dict[str, float | int | bool]:
    """CLIP_benchmark's linear-probe metrics (module docstring) of features already computed:
    {"lp_acc1", "lp_acc5", "lp_mean_per_class_recall", "weight_decay", "epochs", "seed",
    "fewshot_k", "normalized"}."""
    device = torch.device(device)
    num_classes = int(train.labels.max()) + 1
    small = config.batch_size * train.features.shape[1] * num_classes <= SMALL_PROBE_MACS
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), \
            _threads(1 if device.type == "cpu" and small else None):
        torch.manual_seed(config.seed)
        rows = training_rows(train, config.fewshot_k)

        def fit(on: Features, weight_decay: float) -> torch.nn.Linear:
            return fit_probe(on, num_classes, weight_decay=weight_decay, config=config, device=device,
                             autocast=autocast)

        def logits_of(probe: torch.nn.Linear, of: Features) -> torch.Tensor:
            return probe_logits(probe, of, batch_size=config.batch_size, device=device, autocast=autocast)

        if validation is None:
            weight_decay: float = 0
            final_rows = rows
        else:
            weight_decay = search_weight_decay(
                lambda decay: top_k_accuracies(logits_of(fit(rows, decay), validation), validation.labels, (1,))[0])
            final_rows = rows if config.fewshot_k > 0 else Features(
                torch.cat([rows.features, validation.features]), torch.cat([rows.labels, validation.labels]))
        logits = logits_of(fit(final_rows, weight_decay), test)
    metrics = classification_metrics(logits, test.labels, top5_defined=int(test.labels.max()) >= 5 and num_classes >= 5)
    return {"lp_acc1": metrics["acc1"], "lp_acc5": metrics["acc5"],
            "lp_mean_per_class_recall": metrics["mean_per_class_recall"], "weight_decay": weight_decay,
            "epochs": config.epochs, "seed": config.seed, "fewshot_k": config.fewshot_k, "normalized": True}
