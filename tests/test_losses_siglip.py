import math

import pytest
import torch

from cliplab.losses.siglip import SIGLIP_DIST_IMPLS, SigLipLoss
from loss_helpers import rank_rows
from test_losses_clip import global_batch

SCALE, BIAS = 4.0, -1.5


def _siglip_worker(rank, world_size, layouts):
    results = []
    for batch_sizes in layouts:
        image, text = global_batch(sum(batch_sizes))
        rows = rank_rows(batch_sizes, rank)
        for dist_impl in SIGLIP_DIST_IMPLS:
            local_image = image[rows].clone().requires_grad_(True)
            local_text = text[rows].clone().requires_grad_(True)
            scale = torch.tensor(SCALE, requires_grad=True)
            bias = torch.tensor(BIAS, requires_grad=True)
            loss_fn = SigLipLoss(rank=rank, world_size=world_size, dist_impl=dist_impl)
            loss, metrics = loss_fn(local_image, local_text, scale, bias, return_metrics=True)
            loss.backward()
            results.append({"batch_sizes": batch_sizes, "dist_impl": dist_impl, "loss": loss.detach(),
                            "image_grad": local_image.grad, "text_grad": local_text.grad,
                            "scale_grad": scale.grad, "bias_grad": bias.grad, "metrics": metrics.as_floats()})
    return results


def one_process_reference(image, text):
    image, text = image.clone().requires_grad_(True), text.clone().requires_grad_(True)
    scale = torch.tensor(SCALE, requires_grad=True)
    bias = torch.tensor(BIAS, requires_grad=True)
    loss, metrics = SigLipLoss()(image, text, scale, bias, return_metrics=True)
    loss.backward()
    return loss.detach(), image.grad, text.grad, scale.grad, bias.grad, metrics


def check_siglip_results(world_size, per_rank):
    """Assertions on the per-rank results of _siglip_worker (run by test_losses_distributed)."""
    # N=2 exercises only the one-way step of "bidir"; N=3 only its bidirectional step; N=4 both.
    close = dict(rtol=1e-5, atol=1e-6)
    for case_index, case in enumerate(per_rank[0]):
        batch_sizes = case["batch_sizes"]
        loss, image_grad, text_grad, scale_grad, bias_grad, metrics = one_process_reference(
            *global_batch(sum(batch_sizes)))
        cases = [results[case_index] for results in per_rank]
        torch.testing.assert_close(torch.stack([c["loss"] for c in cases]).mean(), loss, **close)
        torch.testing.assert_close(torch.stack([c["scale_grad"] for c in cases]).mean(), scale_grad, **close)
        torch.testing.assert_close(torch.stack([c["bias_grad"] for c in cases]).mean(), bias_grad, **close)
        for rank, c in enumerate(cases):
            rows = rank_rows(batch_sizes, rank)
            torch.testing.assert_close(c["image_grad"], world_size * image_grad[rows], **close)
            torch.testing.assert_close(c["text_grad"], world_size * text_grad[rows], **close)
            assert c["metrics"] == pytest.approx(metrics.as_floats() | {"local_batch_size": batch_sizes[rank]})


def test_closed_form_two_pairs():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # z = 2 * [[1, 0.6], [0, 0.8]] - 1 = [[1, 0.2], [-1, 0.6]]; -log sigmoid(x) = log(1 + exp(-x))
    softplus = lambda x: math.log(1 + math.exp(x))  # noqa: E731
    expected = (softplus(-1.0) + softplus(0.2) + softplus(-1.0) + softplus(-0.6)) / 2
    loss = SigLipLoss()(image, text, torch.tensor(2.0), torch.tensor(-1.0))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_metrics_equal_argmax_accuracy_of_the_full_logits():
    image, text = global_batch(7, seed=3)
    _, metrics = SigLipLoss()(image, text, SCALE, BIAS, return_metrics=True)
    logits = SCALE * image @ text.T + BIAS
    labels = torch.arange(7)
    assert metrics.i2t_accuracy.item() == (logits.argmax(dim=1) == labels).float().mean().item()
    assert metrics.t2i_accuracy.item() == (logits.T.argmax(dim=1) == labels).float().mean().item()
    assert 0.0 < metrics.i2t_accuracy.item() < 1.0
    assert (metrics.local_batch_size, metrics.global_batch_size) == (7, 7)


def test_fp32_under_autocast_and_clamped_scale():
    image, text = global_batch(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = SigLipLoss()(image.bfloat16(), text.bfloat16(), 500.0, BIAS)
    reference = SigLipLoss()(image.bfloat16().float(), text.bfloat16().float(), 100.0, BIAS)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, reference, rtol=1e-6, atol=0)


def test_cache_and_normalize_options():
    image, text = global_batch(3)
    cached = SigLipLoss(cache_labels=True)
    assert torch.equal(cached(image, text, SCALE, BIAS), cached(image, text, SCALE, BIAS))
    torch.testing.assert_close(SigLipLoss(normalize=True)(3 * image, text / 2, SCALE, BIAS),
                               SigLipLoss()(image, text, SCALE, BIAS), rtol=1e-6, atol=0)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="dist_impl"):
        SigLipLoss(dist_impl="ring")
    with pytest.raises(ValueError, match="logit_bias"):
        SigLipLoss()(torch.randn(2, 3), torch.randn(2, 3), 1.0, float("nan"))
    with pytest.raises(ValueError, match="logit_scale"):
        SigLipLoss()(torch.randn(2, 3), torch.randn(2, 3), float("inf"), 0.0)
    with pytest.raises(ValueError, match="batch size"):
        SigLipLoss()(torch.randn(2, 3), torch.randn(3, 3), 1.0, 0.0)
    assert SigLipLoss().dist_impl == "bidir"
