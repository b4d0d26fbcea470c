import math

import pytest
import torch
import torch.nn.functional as F

from cliplab.losses.clip import ClipLoss
from cliplab.losses.common import ContrastiveMetrics
from loss_helpers import OPTION_GRID, rank_rows
FEATURE_DIM = 5
SCALE = 3.0


def global_batch(global_rows: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(global_rows, FEATURE_DIM, generator=generator), dim=-1)
    text = F.normalize(torch.randn(global_rows, FEATURE_DIM, generator=generator), dim=-1)
    # Make half of the pairs similar so that accuracy is neither 0 nor 1.
    text[::2] = F.normalize(text[::2] + 2 * image[::2], dim=-1)
    return image, text


def one_process_reference(image, text, scale=SCALE):
    image, text = image.clone().requires_grad_(True), text.clone().requires_grad_(True)
    logit_scale = torch.tensor(scale, requires_grad=True)
    loss, metrics = ClipLoss()(image, text, logit_scale, return_metrics=True)
    loss.backward()
    return loss.detach(), image.grad, text.grad, logit_scale.grad, metrics


def _clip_worker(rank, world_size, layouts):
    results = []
    for batch_sizes in layouts:
        image, text = global_batch(sum(batch_sizes))
        rows = rank_rows(batch_sizes, rank)
        for local_loss, gather_with_grad in OPTION_GRID:
            local_image = image[rows].clone().requires_grad_(True)
            local_text = text[rows].clone().requires_grad_(True)
            logit_scale = torch.tensor(SCALE, requires_grad=True)
            loss_fn = ClipLoss(local_loss=local_loss, gather_with_grad=gather_with_grad,
                               rank=rank, world_size=world_size)
            output, metrics = loss_fn(local_image, local_text, logit_scale, output_dict=True,
                                      return_metrics=True)
            output["contrastive_loss"].backward()
            results.append({
                "batch_sizes": batch_sizes, "local_loss": local_loss, "gather_with_grad": gather_with_grad,
                "loss": output["contrastive_loss"].detach(), "image_grad": local_image.grad,
                "text_grad": local_text.grad, "scale_grad": logit_scale.grad,
                "metrics": metrics.as_floats(),
            })
    return results


def local_loss_without_gathered_grad(image, text, batch_sizes, rank, world_size, scale=SCALE):
    """Rank r's local loss with every gathered column held constant, by the formula."""
    rows = rank_rows(batch_sizes, rank)
    local_image = image[rows].clone().requires_grad_(True)
    local_text = text[rows].clone().requires_grad_(True)
    logits_per_image = scale * local_image @ text.T
    logits_per_text = scale * local_text @ image.T
    labels = torch.arange(rows.start, rows.stop)
    mean_local_batch = sum(batch_sizes) / world_size
    loss = (F.cross_entropy(logits_per_image, labels, reduction="sum")
            + F.cross_entropy(logits_per_text, labels, reduction="sum")) / (2 * mean_local_batch)
    loss.backward()
    return loss.detach(), local_image.grad, local_text.grad


def check_clip_results(world_size, per_rank):
    """Assertions on the per-rank results of _clip_worker (run by test_losses_distributed)."""
    close = dict(rtol=1e-5, atol=1e-7)
    for case_index, case in enumerate(per_rank[0]):
        batch_sizes = case["batch_sizes"]
        image, text = global_batch(sum(batch_sizes))
        loss, image_grad, text_grad, scale_grad, metrics = one_process_reference(image, text)
        cases = [results[case_index] for results in per_rank]
        losses = torch.stack([c["loss"] for c in cases])
        # The ranks' losses always average to the global loss.
        torch.testing.assert_close(losses.mean(), loss, **close)
        if not case["local_loss"]:
            for c in cases:
                torch.testing.assert_close(c["loss"], loss, **close)
        # Scale gradient averaged by DDP: exact unless only the own rows carry the gradient
        # (global loss, no gather grad), where every rank holds the full dL/ds.
        mean_scale_grad = torch.stack([c["scale_grad"] for c in cases]).mean()
        torch.testing.assert_close(mean_scale_grad, scale_grad, **close)
        for rank, c in enumerate(cases):
            rows = rank_rows(batch_sizes, rank)
            if c["gather_with_grad"]:
                expected_image, expected_text = world_size * image_grad[rows], world_size * text_grad[rows]
            elif not c["local_loss"]:
                expected_image, expected_text = image_grad[rows], text_grad[rows]
            else:
                local, expected_image, expected_text = local_loss_without_gathered_grad(
                    image, text, batch_sizes, rank, world_size)
                torch.testing.assert_close(c["loss"], local, **close)
            torch.testing.assert_close(c["image_grad"], expected_image, **close)
            torch.testing.assert_close(c["text_grad"], expected_text, **close)
            assert c["metrics"] == pytest.approx(metrics.as_floats() | {"local_batch_size": batch_sizes[rank]})


def test_closed_form_two_pairs():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # s * I @ T.T = 2 * [[1, 0.6], [0, 0.8]] = [[2, 1.2], [0, 1.6]]
    image_to_text = ((-2 + math.log(math.exp(2) + math.exp(1.2)))
                     + (-1.6 + math.log(math.exp(0) + math.exp(1.6)))) / 2
    text_to_image = ((-2 + math.log(math.exp(2) + math.exp(0)))
                     + (-1.6 + math.log(math.exp(1.2) + math.exp(1.6)))) / 2
    expected = (image_to_text + text_to_image) / 2
    loss, metrics = ClipLoss()(image, text, torch.tensor(2.0), return_metrics=True)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert isinstance(metrics, ContrastiveMetrics)
    # rows: argmax [2, 1.2] -> 0 (right), [0, 1.6] -> 1 (right); columns: [2, 0] -> 0, [1.2, 1.6] -> 1
    assert metrics.as_floats() == {"i2t_accuracy": 1.0, "t2i_accuracy": 1.0, "logit_scale": 2.0,
                                   "local_batch_size": 2.0, "global_batch_size": 2.0}


def test_logit_scale_is_clamped_and_loses_its_gradient_above_the_maximum():
    image, text = global_batch(3)
    scale = torch.tensor(150.0, requires_grad=True)
    clamped = ClipLoss(max_logit_scale=100.0)(image, text, scale)
    at_maximum = ClipLoss(max_logit_scale=None)(image, text, torch.tensor(100.0))
    assert torch.equal(clamped.detach(), at_maximum)
    clamped.backward()
    assert scale.grad.item() == 0.0


def test_fp32_under_autocast_and_from_bf16_inputs():
    image, text = global_batch(4)
    reference = ClipLoss()(image.bfloat16().float(), text.bfloat16().float(), SCALE)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = ClipLoss()(image.bfloat16(), text.bfloat16(), SCALE)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, reference, rtol=1e-6, atol=0)


def test_normalize_option_equals_normalising_first():
    image, text = global_batch(3)
    loss = ClipLoss(normalize=True)(image * 4.0, text * 0.5, SCALE)
    torch.testing.assert_close(loss, ClipLoss()(image, text, SCALE), rtol=1e-6, atol=0)


def test_cached_labels_give_the_same_loss():
    image, text = global_batch(3)
    loss_fn = ClipLoss(cache_labels=True)
    first = loss_fn(image, text, SCALE)
    assert torch.equal(loss_fn(image, text, SCALE), first)


@pytest.mark.parametrize("image, text, logit_scale, argument", [
    (torch.randn(3, 4), torch.randn(2, 4), 1.0, "batch size"),
    (torch.randn(3, 4), torch.randn(3, 5), 1.0, "feature size"),
    (torch.randn(3, 4, 1), torch.randn(3, 4), 1.0, "image_features"),
    (torch.randn(3, 4), torch.randn(3, 4), float("nan"), "logit_scale"),
    (torch.randn(3, 4), torch.randn(3, 4), torch.tensor(float("inf")), "logit_scale"),
])
def test_bad_input_names_the_argument(image, text, logit_scale, argument):
    with pytest.raises(ValueError, match=argument):
        ClipLoss()(image, text, logit_scale)


@pytest.mark.parametrize("kwargs, argument", [
    ({"rank": 2, "world_size": 2}, "rank"), ({"world_size": 0}, "world_size"),
    ({"max_logit_scale": -1.0}, "max_logit_scale"), ({"normalize_eps": 0.0}, "normalize_eps"),
    ({"local_loss": 1}, "local_loss"),
])
def test_bad_config_names_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        ClipLoss(**kwargs)


def test_world_size_without_process_group_is_rejected():
    with pytest.raises(ValueError, match="not initialised"):
        ClipLoss(rank=0, world_size=2)(torch.randn(2, 3), torch.randn(2, 3), 1.0)


def test_horovod_missing_is_a_clear_error():
    with pytest.raises(ImportError, match="Horovod, which is not installed"):
        ClipLoss(use_horovod=True)
