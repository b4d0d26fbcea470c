"""The evaluator's rule of when an evaluation is due, and what it logs."""

import contextlib

import torch

from cliplab.data import DataConfig
from cliplab.train import evaluation
from cliplab.train.config import EvalConfig
from cliplab.train.evaluation import Evaluator
from cliplab.train.state import TrainState


def test_due_every_n_epochs_and_once_at_the_end(monkeypatch):
    monkeypatch.setattr(evaluation, "evaluate", lambda *args, **kwargs: {"image_to_text_R@1": 0.5})
    logged = []
    evaluator = Evaluator(EvalConfig(zeroshot_frequency=2), DataConfig(), evaluates_at_end=True, model=None,
                          tokenizer=None, transform=None, device=torch.device("cpu"),
                          autocast=contextlib.nullcontext, log=logged.append)
    state = TrainState()
    for step in range(1, 13):  # 3 steps an epoch, 4 epochs
        state.step, epoch_done = step, step % 3 == 0
        state.epoch += epoch_done
        evaluator.evaluate_if_due(state, epoch_done=epoch_done, finished=step == 12)
    assert [(record["step"], record["epoch"]) for record in logged] == [(6, 2), (12, 4)]  # step 12 once
    assert evaluator.last_record == {"kind": "eval", "step": 12, "epoch": 4, "image_to_text_R@1": 0.5}
