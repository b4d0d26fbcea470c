import math

import pytest
import torch
import torch.nn.functional as F

from cliplab.losses.clip import ClipLoss
from cliplab.losses.coca import CoCaLoss
from loss_helpers import LAYOUTS, OPTION_GRID, rank_rows, results_per_layout_and_option
from test_losses_clip import local_loss_without_gathered_grad

FEATURE_DIM, TOKENS, VOCAB, PAD_ID = 4, 3, 5, 0
SCALE, CAPTION_WEIGHT, CLIP_WEIGHT = 3.0, 2.0, 0.5


def global_batch(global_rows: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    image = F.normalize(torch.randn(global_rows, FEATURE_DIM, generator=generator), dim=-1)
    text = F.normalize(torch.randn(global_rows, FEATURE_DIM, generator=generator), dim=-1)
    caption_logits = torch.randn(global_rows, TOKENS, VOCAB, generator=generator)
    labels = torch.randint(0, VOCAB, (global_rows, TOKENS), generator=generator)
    labels[::2, -1] = PAD_ID  # unequal non-pad token counts across ranks
    return image, text, caption_logits, labels


def run_coca(loss_fn, image, text, caption_logits, labels):
    image, text, caption_logits = (t.clone().requires_grad_(True) for t in (image, text, caption_logits))
    scale = torch.tensor(SCALE, requires_grad=True)
    output = loss_fn(image, text, caption_logits, labels, scale, output_dict=True)
    (output["contrastive_loss"] + output["caption_loss"]).backward()
    return {"contrastive": output["contrastive_loss"].detach(), "caption": output["caption_loss"].detach(),
            "image_grad": image.grad, "text_grad": text.grad, "logits_grad": caption_logits.grad,
            "scale_grad": scale.grad}


def _coca_worker(rank, world_size, layouts):
    def make_loss(local_loss, gather_with_grad):
        return CoCaLoss(CAPTION_WEIGHT, CLIP_WEIGHT, pad_id=PAD_ID, local_loss=local_loss,
                        gather_with_grad=gather_with_grad, rank=rank, world_size=world_size)
    return results_per_layout_and_option(rank, layouts, global_batch, make_loss, run_coca)


def check_coca_results(world_size, per_rank):
    """Assertions on the per-rank results of _coca_worker (run by test_losses_distributed)."""
    close = dict(rtol=1e-5, atol=1e-7)
    layout_cases = len(OPTION_GRID)
    for case_index, case in enumerate(per_rank[0]):
        batch_sizes = LAYOUTS[world_size][case_index // layout_cases]
        image, text, caption_logits, labels = global_batch(sum(batch_sizes))
        reference = run_coca(CoCaLoss(CAPTION_WEIGHT, CLIP_WEIGHT, pad_id=PAD_ID), image, text, caption_logits, labels)
        cases = [results[case_index] for results in per_rank]
        for key in ("contrastive", "caption", "scale_grad"):
            torch.testing.assert_close(torch.stack([c[key] for c in cases]).mean(), reference[key], **close)
        for rank, c in enumerate(cases):
            rows = rank_rows(batch_sizes, rank)
            # The caption term is per rank whatever the options: N times the global gradient.
            torch.testing.assert_close(c["logits_grad"], world_size * reference["logits_grad"][rows], **close)
            if c["gather_with_grad"] or not c["local_loss"]:
                factor = world_size if c["gather_with_grad"] else 1
                torch.testing.assert_close(c["image_grad"], factor * reference["image_grad"][rows], **close)
                torch.testing.assert_close(c["text_grad"], factor * reference["text_grad"][rows], **close)
            else:
                # open_clip's local loss without gathered gradients: the other ranks' columns are constants.
                _, image_grad, text_grad = local_loss_without_gathered_grad(image, text, batch_sizes, rank,
                                                                            world_size, scale=SCALE)
                torch.testing.assert_close(c["image_grad"], CLIP_WEIGHT * image_grad, **close)
                torch.testing.assert_close(c["text_grad"], CLIP_WEIGHT * text_grad, **close)


def test_closed_form_two_pairs():
    # I = [[1, 0], [0, 1]], T = [[1, 0], [0.6, 0.8]], s = 2: logits s * I @ T.T = [[2, 1.2], [0, 1.6]].
    # Contrastive: mean over rows and columns of logsumexp - diagonal, halved, times clip weight.
    rows_ce = [math.log(math.exp(2) + math.exp(1.2)) - 2, math.log(1 + math.exp(1.6)) - 1.6]
    cols_ce = [math.log(math.exp(2) + 1) - 2, math.log(math.exp(1.2) + math.exp(1.6)) - 1.6]
    expected_contrastive = CLIP_WEIGHT * (sum(rows_ce) / 2 + sum(cols_ce) / 2) / 2
    # Caption: two samples of two tokens over a vocabulary of three; label 0 is padding.
    logits = torch.tensor([[[0.0, 1.0, 3.0], [5.0, 5.0, 5.0]],
                           [[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    labels = torch.tensor([[2, PAD_ID], [1, 2]])
    token_losses = [math.log(1 + math.e + math.exp(3)) - 3,    # sample 0, token 0, label 2
                    math.log(math.exp(2) + 2) - 0,             # sample 1, token 0, label 1
                    math.log(2 + math.e) - 1]                  # sample 1, token 1, label 2
    expected_caption = CAPTION_WEIGHT * sum(token_losses) / 3
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    (contrastive, caption), metrics = CoCaLoss(CAPTION_WEIGHT, CLIP_WEIGHT, pad_id=PAD_ID)(
        image, text, logits, labels, 2.0, return_metrics=True)
    assert contrastive.item() == pytest.approx(expected_contrastive, rel=1e-6)
    assert caption.item() == pytest.approx(expected_caption, rel=1e-6)
    # Image 1's best text is text 1 (1.6 > 0); text 0's best image is image 0 (2 > 0), text 1's is image 1.
    assert metrics.i2t_accuracy.item() == 1.0 and metrics.t2i_accuracy.item() == 1.0


def test_closed_form_single_pair():
    # One pair: the contrastive logits are 1x1, so both cross-entropies are exactly 0.
    # Caption: token 0 has logits [1, 0] and label 1 -> log(e^1 + e^0) - 0; token 1 is padding.
    logits = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])
    labels = torch.tensor([[1, PAD_ID]])
    (contrastive, caption), metrics = CoCaLoss(CAPTION_WEIGHT, CLIP_WEIGHT, pad_id=PAD_ID)(
        torch.ones(1, 2), torch.ones(1, 2), logits, labels, SCALE, return_metrics=True)
    assert contrastive.item() == 0.0
    assert caption.item() == pytest.approx(CAPTION_WEIGHT * math.log(1 + math.e), rel=1e-6)
    assert metrics.i2t_accuracy.item() == 1.0


def test_contrastive_part_is_the_weighted_clip_loss_and_fp32_under_autocast():
    image, text, caption_logits, labels = global_batch(4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        contrastive, caption = CoCaLoss(CAPTION_WEIGHT, CLIP_WEIGHT)(
            image, text, caption_logits.bfloat16(), labels, SCALE)
    assert contrastive.dtype == caption.dtype == torch.float32
    torch.testing.assert_close(contrastive, CLIP_WEIGHT * ClipLoss()(image, text, SCALE), rtol=1e-6, atol=0)
    expected_caption = F.cross_entropy(caption_logits.bfloat16().float().permute(0, 2, 1), labels,
                                       ignore_index=PAD_ID)
    torch.testing.assert_close(caption, CAPTION_WEIGHT * expected_caption, rtol=1e-6, atol=0)


def test_bad_caption_input_names_the_argument():
    image, text, caption_logits, labels = global_batch(2)
    loss_fn = CoCaLoss(1.0, 1.0, pad_id=-100)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 5\)"):
        loss_fn(image, text, caption_logits, labels.masked_fill(labels == labels[0, 0], VOCAB), SCALE)
    with pytest.raises(ValueError, match="labels must have shape"):
        loss_fn(image, text, caption_logits, labels[:, :2], SCALE)
    with pytest.raises(ValueError, match="logits must be"):
        loss_fn(image, text, caption_logits[0], labels, SCALE)
    with pytest.raises(ValueError, match="caption_loss_weight"):
        CoCaLoss(-1.0, 1.0)
    # pad_id outside the vocabulary marks padding, not an error
    labels_with_padding = labels.clone()
    labels_with_padding[0, 0] = -100
    loss_fn(image, text, caption_logits, labels_with_padding, SCALE)
