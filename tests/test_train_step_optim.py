"""Weight-decay groups (open_clip's exclusions), the logit-scale clamp, and the lr schedule."""

import math

import pytest
import torch

from cliplab.models import create_model
from cliplab.train.config import OptimConfig
from cliplab.train.step.optim import build_optimizer, clamp_logit_scale_, parameter_groups
from cliplab.train.step.schedule import learning_rate


def test_no_decay_on_biases_norms_embeddings_and_scale():
    model = create_model("tiny-siglip")
    no_decay, decay = parameter_groups(model, weight_decay=0.2)
    assert no_decay["weight_decay"] == 0.0 and decay["weight_decay"] == 0.2
    names = set(no_decay["param_names"])
    assert {"logit_scale", "logit_bias"} <= names
    assert any("position" in name for name in names)
    parameters = dict(model.named_parameters())
    for name in names:
        assert parameters[name].ndim < 2 or "embedding" in name, name
    for name in decay["param_names"]:
        assert parameters[name].ndim >= 2 and "norm" not in name and "bias" not in name, name
    assert len(names) + len(decay["param_names"]) == len(parameters)


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
