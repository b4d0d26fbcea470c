"""The EMA of the weights: its closed form, the swap for evaluation, and in runs: evaluated beside the
model (ema/ metrics), checkpointed, resumed bit for bit (together with LoRA adapters and layer-decay
groups), loaded and exported as a model; a resume that changes it (or LoRA) is refused naming it."""

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import cliplab
from cliplab.cli import main
from cliplab.models import build_model
from cliplab.models.lora import add_lora, merge_lora, read_lora_spec
from cliplab.pretrained.cliplab_bundle import read_config
from cliplab.train import TrainHooks, train
from cliplab.train.checkpointing.manager import CheckpointManager
from cliplab.train.config import EmaConfig, LoraConfig
from cliplab.train.config.history import ConfigChangeError
from cliplab.train.step.ema import WeightEma, ema_decay, weights_swapped

from train_helpers import assert_same_final_checkpoint, logged_losses, small_config

STEPS = 8


def test_the_decay_warms_up_linearly():
    assert ema_decay(1, EmaConfig(decay=0.99)) == 0.99
    warm = EmaConfig(decay=0.9, warmup=4)
    assert [ema_decay(step, warm) for step in (1, 2, 4, 9)] == [0.9 * 0.25, 0.9 * 0.5, 0.9, 0.9]


def test_averages_follow_the_closed_form_and_cover_what_trains():
    layer = nn.Linear(3, 2)
    layer.bias.requires_grad_(False)
    ema = WeightEma(layer, EmaConfig(decay=0.5, warmup=2))
    assert list(ema.averages) == ["weight"]  # frozen tensors are the model's own
    start = layer.weight.detach().clone()
    values = [start]
    for step in (1, 2, 3):
        with torch.no_grad():
            layer.weight.add_(1.0)
        values.append(layer.weight.detach().clone())
        ema.update(step)
    # d_1 = 0.25, d_2 = d_3 = 0.5: a <- d a + (1 - d) w
    expected = start
    for decay, weight in zip((0.25, 0.5, 0.5), values[1:]):
        expected = decay * expected + (1 - decay) * weight
    torch.testing.assert_close(ema.averages["weight"], expected, rtol=0, atol=1e-6)
    assert ema.averages["weight"].dtype == torch.float32


def test_weights_swap_in_for_the_context_and_back_bit_for_bit():
    layer = nn.Linear(3, 2)
    before = {name: value.clone() for name, value in layer.state_dict().items()}
    with weights_swapped(layer, {"weight": torch.zeros(2, 3)}) as swapped:
        assert not swapped.weight.any() and torch.equal(swapped.bias, before["bias"])
    assert all(torch.equal(layer.state_dict()[name], value) for name, value in before.items())


def _config(logs, name, *, evaluate=False):
    config = small_config(logs, name=name, steps=STEPS, evaluate=evaluate)
    config.checkpoint.save_every_steps = 4
    config.lora = LoraConfig(rank=2, alpha=4, dropout=0.1)  # dropout: the resume must replay its masks
    config.ema = EmaConfig(decay=0.8, warmup=3)
    config.optim.layer_decay = 0.7
    config.optim.lr_text = 2e-3
    config.loop.deterministic = True
    return config


class Crash(Exception):
    pass


def _crash_after(step):
    def after_step(done, model):
        if done == step:
            raise Crash(done)
    return TrainHooks(after_step=after_step)


def _latest(run_dir):
    return CheckpointManager(run_dir / "checkpoints", keep=2).latest()


def test_a_resumed_run_with_lora_layer_decay_and_ema_ends_bit_for_bit_equal(tmp_path):
    train(_config(tmp_path, "reference"))
    with pytest.raises(Crash):
        train(_config(tmp_path, "crashed"), hooks=_crash_after(6))  # after the checkpoint of step 4
    resumed = _config(tmp_path, "crashed")
    resumed.checkpoint.resume = "latest"
    train(resumed)

    assert_same_final_checkpoint(tmp_path / "crashed", tmp_path / "reference", steps=STEPS)
    averages = [load_file(_latest(tmp_path / name) / "ema.safetensors") for name in ("crashed", "reference")]
    assert averages[0].keys() == averages[1].keys() and averages[0]
    assert all(torch.equal(averages[0][name], averages[1][name]) for name in averages[1])
    losses, reference = logged_losses(tmp_path / "crashed"), logged_losses(tmp_path / "reference")
    assert all(losses[step] == reference[step] for step in range(5, STEPS + 1))
    state = torch.load(_latest(tmp_path / "crashed") / "train_state.pt", weights_only=True)
    assert len(state["optimizer"]["param_groups"]) > 2  # the layer-decay groups, resumed as they were

    # the averages cover exactly what trained: the adapters and the logit scale
    assert all(".lora_" in name for name in averages[1] if name != "logit_scale") and "logit_scale" in averages[1]

    # a resume that changes the EMA or the adapters is refused, naming the setting
    for section, change in (("ema", {"decay": 0.9}), ("lora", {"rank": 4})):
        changed = _config(tmp_path, "reference")
        changed.checkpoint.resume = "latest"
        setattr(changed, section, type(getattr(changed, section))(**{**vars(getattr(changed, section)), **change}))
        with pytest.raises(ConfigChangeError, match=f"{section}.{next(iter(change))}"):
            train(changed)


def test_an_evaluated_ema_run_loads_and_exports_its_averages(tmp_path, capsys):
    config = _config(tmp_path, "run", evaluate=True)
    config.checkpoint.save_every_steps = None
    train(config)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    evaluation = next(record for record in records if record["kind"] == "eval")
    for key in ("zero_shot_top1", "zero_shot_top5", "image_to_text_R@1", "text_to_image_R@1"):
        assert 0 <= evaluation[f"ema/{key}"] <= 1 and key in evaluation
    assert "EMA weights: zero-shot top-1" in capsys.readouterr().out

    checkpoint = _latest(tmp_path / "run")
    averages = load_file(checkpoint / "ema.safetensors")
    model, _, _ = cliplab.load(tmp_path / "run")
    ema_model, _, _ = cliplab.load(tmp_path / "run", ema=True)
    # the EMA model is the checkpoint's model with the averages in place, adapters merged: by hand
    rebuilt = build_model(read_config(checkpoint / "config.json"))
    adapted = add_lora(rebuilt, read_lora_spec(checkpoint))
    rebuilt.load_state_dict({**load_file(checkpoint / "model.safetensors"), **averages})
    by_hand = merge_lora(adapted).state_dict()
    assert all(torch.equal(by_hand[name], value) for name, value in ema_model.state_dict().items())
    assert not torch.equal(ema_model.logit_scale, model.logit_scale)
    assert torch.equal(ema_model.logit_scale, averages["logit_scale"])

    assert main(["export", str(tmp_path / "run"), "--ema", "--format", "bundle", "--out", str(tmp_path / "out")]) == 0
    exported, _, _ = cliplab.load(tmp_path / "out")
    assert all(torch.equal(exported.state_dict()[name], value) for name, value in ema_model.state_dict().items())
    assert main(["export", str(tmp_path / "out"), "--ema", "--format", "bundle", "--out", str(tmp_path / "x")]) == 2
    assert "holds no EMA weights" in capsys.readouterr().err
