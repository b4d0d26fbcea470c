"""Accumulating k micro-batches of b equals one batch of k*b, with dropout and patch dropout on."""

import copy

import torch

from cliplab.losses import ClipLoss
from cliplab.models import create_model
from cliplab.train import accumulation
from cliplab.train.accumulation import MicroBatch, forward_backward
from cliplab.train.loss_setup import compute_loss


def _model():
    torch.manual_seed(0)
    return create_model("tiny-vit", **{"vision.dropout": 0.2, "vision.patch_dropout": 0.3, "text.dropout": 0.2,
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
    loss_fn = ClipLoss()
    output = forward_backward(micro_batches, forward=model, compute_loss=lambda out: compute_loss(loss_fn, out),
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
