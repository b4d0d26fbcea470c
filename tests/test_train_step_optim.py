"""The optimiser over trainable parameters, the logit-scale clamp, and the lr schedule (the groups:
test_train_step_param_groups.py)."""

import math

import pytest
import torch

from cliplab.models import create_model
from cliplab.train.config import OptimConfig
from cliplab.train.step.optim import build_optimizer, clamp_logit_scale_
from cliplab.train.step.schedule import learning_rate


def test_frozen_parameters_are_left_out():
    model = create_model("tiny")
    model.lock_image_tower()
    optimizer = build_optimizer(model, OptimConfig())
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert all(id(p) not in optimised for p in model.vision_tower.parameters())


def test_logit_scale_clamped_to_log_100():
    model = create_model("tiny")
    with torch.no_grad():
        model.logit_scale.fill_(7.0)
    clamp_logit_scale_(model, 100.0)
    assert model.logit_scale.item() <= math.log(100.0)
    assert model.logit_scale.item() == pytest.approx(math.log(100.0))
    assert model.logit_scale.exp().item() <= 100.0
    with torch.no_grad():
        model.logit_scale.fill_(-1.0)
    clamp_logit_scale_(model, 100.0)
    assert model.logit_scale.item() == 0.0


def test_warmup_then_cosine():
    config = OptimConfig(lr=1.0, warmup=10, min_lr=0.1)
    assert learning_rate(0, 110, config) == pytest.approx(0.1)
    assert learning_rate(9, 110, config) == pytest.approx(1.0)
    assert learning_rate(10, 110, config) == pytest.approx(1.0)
    assert learning_rate(60, 110, config) == pytest.approx(0.55)
    assert learning_rate(110, 110, config) == pytest.approx(0.1)
    const = OptimConfig(lr=1.0, warmup=0, lr_scheduler="const")
    assert learning_rate(50, 100, const) == 1.0
