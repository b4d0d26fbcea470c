"""The optimiser over trainable parameters, the logit-scale clamp, and the lr schedule (the groups:
test_train_step_param_groups.py)."""

import copy
import math

import pytest
import torch
from torch import nn

from cliplab.models import create_model
from cliplab.train.config import OptimConfig
from cliplab.train.step.optim import build_optimizer, clamp_logit_scale_, update_kernel
from cliplab.train.step.param_groups import parameter_groups
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


def test_adamw_runs_the_fused_kernel_where_torch_has_one_and_updates_as_the_loop_does():
    torch.manual_seed(0)
    fused_model = create_model("tiny")
    loop_model = copy.deepcopy(fused_model)
    config = OptimConfig(lr=1e-2)
    fused = build_optimizer(fused_model, config)
    loop = torch.optim.AdamW(parameter_groups(loop_model, config), lr=config.lr, betas=(config.beta1, config.beta2),
                             eps=config.eps, foreach=False)
    assert fused.defaults["fused"] and update_kernel(nn.Linear(2, 2, device="meta")) == {"foreach": False}
    for model, optimizer in ((fused_model, fused), (loop_model, loop)):
        for step in range(2):
            for index, parameter in enumerate(model.parameters()):
                parameter.grad = torch.full_like(parameter, 0.1 * (index % 7 - 3) + step)
            optimizer.step()
    # One pass per parameter instead of the loop's ten or so: the same update, up to float rounding.
    for (name, updated), expected in zip(fused_model.named_parameters(), loop_model.parameters()):
        torch.testing.assert_close(updated, expected, msg=name)
