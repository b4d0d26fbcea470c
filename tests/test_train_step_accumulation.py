"""Accumulating k micro-batches of b equals one batch of k*b, with dropout and patch dropout on: one
step of `forward_backward`, and end to end through `train` (one process, and 2 gloo ranks)."""

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from cliplab.distributed.launch import run_on_workers
from cliplab.losses import ClipLoss
from cliplab.models import create_model
from cliplab.train import train, trainer
from cliplab.train.checkpointing.manager import CheckpointManager
from cliplab.train.step import accumulation
from cliplab.train.step.accumulation import MicroBatch, forward_backward
from cliplab.train.step.loss_table import CLIP_OUTPUTS, TrainingLoss

from train_helpers import small_config


def _model():
    torch.manual_seed(0)
    return create_model("tiny-vit", output_dict=True, **{"vision.dropout": 0.2, "vision.patch_dropout": 0.3, "text.dropout": 0.2,
                                       "vision.width": 32, "vision.heads": 2, "vision.layers": 2,
                                       "text.width": 32, "text.heads": 2, "text.layers": 1, "embed_dim": 16})


def _micro_batches(model, k=3, b=4):
    generator = torch.Generator().manual_seed(1)
    size = model.config.vision.image_size
    return [MicroBatch(torch.randn(b, 3, size, size, generator=generator),
                       torch.randint(5, 100, (b, model.config.text.context_length), generator=generator))
            for _ in range(k)]


def _grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def _reference_grads(model, micro_batches, rng_state):
    """One batch of k*b: each micro-batch's forward under the RNG it had in the accumulated pass,
    all graphs kept, one loss over the concatenation, one backward."""
    torch.set_rng_state(rng_state)
    outputs = [model(m.images, m.tokens) for m in micro_batches]
    merged = {key: torch.cat([o[key] for o in outputs]) for key in ("image_features", "text_features")}
    merged["logit_scale"] = outputs[-1]["logit_scale"]
    loss = ClipLoss()(**merged)
    loss.backward()
    return loss.detach(), _grads(model)


def _accumulated_grads(model, micro_batches, rng_state):
    torch.set_rng_state(rng_state)
    output = forward_backward(micro_batches, forward=model, compute_loss=TrainingLoss(ClipLoss(), CLIP_OUTPUTS),
                              backward=lambda total: total.backward())
    return output.total, _grads(model)


def test_accumulation_equals_large_batch_with_dropout_on():
    model = _model()
    micro_batches = _micro_batches(model)
    rng_state = torch.get_rng_state()
    reference_model = copy.deepcopy(model)
    loss, grads = _accumulated_grads(model, micro_batches, rng_state)
    reference_loss, reference_grads = _reference_grads(reference_model, micro_batches, rng_state)
    torch.testing.assert_close(loss, reference_loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == reference_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], reference_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    # The logit scale's gradient is counted once, not k times.
    torch.testing.assert_close(grads["logit_scale"], reference_grads["logit_scale"])


def test_without_rng_replay_the_gradients_differ(monkeypatch):
    """The property the replay buys: open_clip's scheme (no replay) does not match the large batch."""
    model = _model()
    micro_batches = _micro_batches(model)
    rng_state = torch.get_rng_state()
    reference_model = copy.deepcopy(model)
    monkeypatch.setattr(accumulation, "restore_rng", lambda state, device: None)
    _, grads = _accumulated_grads(model, micro_batches, rng_state)
    _, reference_grads = _reference_grads(reference_model, micro_batches, rng_state)
    differs = [not torch.allclose(grads[n], reference_grads[n], rtol=1e-4, atol=1e-6) for n in grads]
    assert any(differs)


def test_single_micro_batch_is_a_plain_step():
    model = _model()
    micro = _micro_batches(model, k=1, b=6)
    rng_state = torch.get_rng_state()
    reference_model = copy.deepcopy(model)
    loss, grads = _accumulated_grads(model, micro, rng_state)
    reference_loss, reference_grads = _reference_grads(reference_model, micro, rng_state)
    assert torch.equal(loss, reference_loss)
    assert all(torch.equal(grads[n], reference_grads[n]) for n in grads)


# End to end: `train` with accum_freq=k and batch b against accum_freq=1 and batch k*b.
# The sampler cuts global batch i as order[i*B*W:(i+1)*B*W], so k consecutive micro-batches of b
# hold exactly the samples of one batch of k*b, and augmentation is seeded per sample.

ACCUM, MICRO_BATCH, E2E_STEPS = 4, 4, 3


class _ChunkedForward(nn.Module):
    """The large-batch reference with the accumulated run's dropout masks: the k*b batch goes
    through the model in chunks of b, one after another from the same RNG state (as pass 1 of the
    accumulation does), and the outputs are concatenated with their graphs, so there is still one
    loss over k*b rows and one backward. Without chunking, dropout would draw one [k*b, ...] mask
    per layer instead of k masks of [b, ...] in another order: equal in distribution only."""

    def __init__(self, model: nn.Module, chunk: int):
        super().__init__()
        self.model, self.chunk = model, chunk

    def forward(self, images, tokens):
        outputs = [self.model(i, t) for i, t in zip(images.split(self.chunk), tokens.split(self.chunk))]
        return {key: torch.cat([o[key] for o in outputs]) if outputs[-1][key].dim() else outputs[-1][key]
                for key in outputs[-1]}


def _e2e_config(logs, name, *, batch_size, accum_freq, text_dropout):
    config = small_config(logs, name=name, steps=E2E_STEPS, batch_size=batch_size)
    config.model.overrides["text.dropout"] = text_dropout
    config.loop.accum_freq = accum_freq
    config.loop.deterministic = True
    config.optim.lr = 1e-3
    config.optim.warmup = 0
    return config


def _final_weights(run_dir):
    latest = CheckpointManager(run_dir / "checkpoints", keep=2).latest()
    assert latest.name == f"step_{E2E_STEPS:07d}"
    return load_file(latest / "model.safetensors")


def _train_losses(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["kind"] == "train"]


def _assert_weights_close(weights, reference, rtol, atol):
    assert weights.keys() == reference.keys()
    for name in reference:
        assert torch.allclose(weights[name], reference[name], rtol=rtol, atol=atol), (
            name, (weights[name] - reference[name]).abs().max().item())


def test_training_with_accumulation_equals_the_large_batch_with_dropout_on(tmp_path, monkeypatch):
    accumulated = train(_e2e_config(tmp_path, "accum", batch_size=MICRO_BATCH, accum_freq=ACCUM, text_dropout=0.2))
    unaligned = train(_e2e_config(tmp_path, "unaligned", batch_size=ACCUM * MICRO_BATCH, accum_freq=1,
                                  text_dropout=0.2))
    wrap = trainer.wrap_for_training

    def chunked(*arguments):
        wrapped = wrap(*arguments)
        return dataclasses.replace(wrapped, module=_ChunkedForward(wrapped.module, MICRO_BATCH))
    monkeypatch.setattr(trainer, "wrap_for_training", chunked)
    large = train(_e2e_config(tmp_path, "large", batch_size=ACCUM * MICRO_BATCH, accum_freq=1, text_dropout=0.2))

    weights, reference = _final_weights(accumulated.run_dir), _final_weights(large.run_dir)
    _assert_weights_close(weights, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(_train_losses(accumulated.run_dir), _train_losses(large.run_dir), rtol=1e-6, atol=0)
    assert accumulated.summary["samples_seen"] == large.summary["samples_seen"] == E2E_STEPS * ACCUM * MICRO_BATCH
    # The dropout is really on: other masks (the plain 16-row forward) give other weights.
    unaligned_weights = _final_weights(unaligned.run_dir)
    assert not all(torch.allclose(unaligned_weights[n], reference[n], rtol=1e-5, atol=1e-6) for n in reference)


def _train_on_ranks(rank, world_size, logs, name, local_loss):
    config = _e2e_config(logs, name, batch_size=MICRO_BATCH, accum_freq=2, text_dropout=0.0)
    config.loss.local_loss = local_loss
    config.loss.gather_with_grad = True
    result = train(config)
    return str(result.run_dir) if rank == 0 else None


@pytest.fixture(scope="module")
def one_process_large_batch(tmp_path_factory):
    return train(_e2e_config(tmp_path_factory.mktemp("one"), "one", batch_size=4 * MICRO_BATCH, accum_freq=1,
                             text_dropout=0.0))


@pytest.mark.parametrize("local_loss", [False, True])
def test_two_processes_accumulating_equal_one_process_with_the_global_batch(tmp_path, one_process_large_batch,
                                                                            local_loss):
    """2 gloo ranks x accum_freq 2 x batch b == 1 process x batch 4b (gather_with_grad, with and
    without local_loss). Dropout off: each rank seeds its training RNG with seed + rank, so rank 1's
    masks cannot be the single process's."""
    two = Path(run_on_workers(_train_on_ranks, 2, str(tmp_path), "two", local_loss, timeout_s=240)[0])
    _assert_weights_close(_final_weights(two), _final_weights(one_process_large_batch.run_dir), rtol=1e-5, atol=1e-6)
    if not local_loss:  # with local_loss, rank 0 logs the loss of its own rows only
        torch.testing.assert_close(_train_losses(two), _train_losses(one_process_large_batch.run_dir),
                                   rtol=1e-6, atol=0)
