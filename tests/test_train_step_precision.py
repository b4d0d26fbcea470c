"""The loop's GradScaler path (RELIABILITY item 6): an inf gradient skips the optimiser step and
halves the scale, and the scaler's state survives a checkpoint round trip.

fp16 with a GradScaler is CUDA-only in `cliplab train`; on a CPU the same loop path runs with
torch's CPU GradScaler patched in (fp32 autocast), and on a CUDA machine the real fp16 run is tested
too. The gradient is made infinite by an identity whose backward returns inf, so the loss itself
stays finite and only the scaler can catch it.
"""

import pytest
import torch
from safetensors.torch import load_file

from cliplab.train import TrainHooks, train
from cliplab.train.checkpointing.manager import CheckpointManager
from cliplab.train.step import precision

from train_helpers import small_config

INIT_SCALE, INF_AT_STEP, STEPS = 2.0 ** 10, 2, 4


class InfiniteGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, value):
        return value.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("inf"))


def _inf_gradient_at(step_to_poison):
    def modify_loss(step, output):
        if step == step_to_poison:
            output.total = InfiniteGradient.apply(output.total)
        return output
    return modify_loss


def _checkpoint(run_dir, step):
    directory = run_dir / "checkpoints" / f"step_{step:07d}"
    return load_file(directory / "model.safetensors"), torch.load(directory / "train_state.pt", weights_only=False)


def _config(tmp_path, name, **loop):
    config = small_config(tmp_path, name=name, steps=STEPS, **loop)
    config.checkpoint.save_every_steps = 1
    config.checkpoint.keep_checkpoints = STEPS
    return config


def _check_inf_step_is_skipped_and_scale_halves(run_dir):
    before_weights, before = _checkpoint(run_dir, INF_AT_STEP)
    after_weights, after = _checkpoint(run_dir, INF_AT_STEP + 1)
    assert before["scaler"]["scale"] == INIT_SCALE
    assert after["scaler"]["scale"] == INIT_SCALE / 2
    for name, tensor in before_weights.items():
        assert torch.equal(after_weights[name], tensor), name
    # The loss was finite: the scaler, not the non-finite guard, skipped the step.
    assert after["train_state"]["nonfinite_skips"] == 0
    next_weights, _ = _checkpoint(run_dir, INF_AT_STEP + 2)
    assert any(not torch.equal(next_weights[name], tensor) for name, tensor in after_weights.items())


@pytest.fixture
def cpu_grad_scaler(monkeypatch):
    monkeypatch.setattr(precision, "build_grad_scaler",
                        lambda loop, device: torch.amp.GradScaler("cpu", init_scale=INIT_SCALE))


def test_inf_gradient_skips_the_step_and_halves_the_scale(tmp_path, cpu_grad_scaler):
    result = train(_config(tmp_path, "poisoned"), hooks=TrainHooks(modify_loss=_inf_gradient_at(INF_AT_STEP)))
    _check_inf_step_is_skipped_and_scale_halves(result.run_dir)


def test_scaler_state_survives_a_checkpoint_round_trip(tmp_path, cpu_grad_scaler):
    hooks = TrainHooks(modify_loss=_inf_gradient_at(INF_AT_STEP))
    reference = train(_config(tmp_path, "reference"), hooks=hooks)
    interrupted = _config(tmp_path, "resumed")
    interrupted.loop.max_steps = INF_AT_STEP + 1  # stops just after the halving
    train(interrupted, hooks=hooks)
    resumed = _config(tmp_path, "resumed")
    resumed.checkpoint.resume = "latest"
    resumed.checkpoint.allow_config_change = ("loop.max_steps",)  # the interrupted attempt stopped early on purpose
    result = train(resumed, hooks=hooks)
    _, reference_state = _checkpoint(reference.run_dir, STEPS)
    _, resumed_state = _checkpoint(result.run_dir, STEPS)
    assert resumed_state["scaler"] == reference_state["scaler"]
    assert resumed_state["scaler"]["scale"] == INIT_SCALE / 2  # the halving was restored, not reset
    assert CheckpointManager(result.run_dir / "checkpoints", keep=STEPS).latest().name == f"step_{STEPS:07d}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 with a GradScaler needs CUDA")
def test_fp16_on_cuda_skips_an_inf_gradient_and_halves_the_scale(tmp_path, monkeypatch):
    real_builder = precision.build_grad_scaler

    def scaler_with_known_scale(loop, device):
        scaler = real_builder(loop, device)
        scaler._init_scale = INIT_SCALE
        return scaler

    monkeypatch.setattr(precision, "build_grad_scaler", scaler_with_known_scale)
    config = _config(tmp_path, "fp16", precision="amp")
    result = train(config, hooks=TrainHooks(modify_loss=_inf_gradient_at(INF_AT_STEP)))
    _check_inf_step_is_skipped_and_scale_halves(result.run_dir)
