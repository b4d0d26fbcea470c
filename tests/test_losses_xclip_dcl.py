import math

import pytest
import torch
import torch.nn.functional as F

from cliplab.losses.xclip.dcl import contrastive_row_losses, global_contrastive_loss


def _direct_symmetric_loss(image, text, scale, decoupled, image_i2t=None, text_i2t=None):
    """Loops over pairs, exp and log written out (fine at these small logits)."""
    image, text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    image_i2t = image if image_i2t is None else F.normalize(image_i2t, dim=-1)
    text_i2t = text if text_i2t is None else F.normalize(text_i2t, dim=-1)
    batch = image.shape[0]
    total = 0.0
    for i in range(batch):
        for rows, columns in ((image_i2t, text_i2t), (text, image)):
            positive = scale * (rows[i] @ columns[i])
            denominator = sum(
                math.exp(scale * float(rows[i] @ columns[j]))
                for j in range(batch) if not (decoupled and j == i)
            )
            total += math.log(denominator) - float(positive)
    return total / (2 * batch)


def test_row_losses_match_closed_form():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]])
    positive = torch.tensor([0, 2])
    infonce = contrastive_row_losses(logits, positive, decoupled=False)
    dcl = contrastive_row_losses(logits, positive, decoupled=True)
    expected_infonce = [math.log(math.exp(2) + math.exp(0.5) + math.exp(-1)) - 2,
                        math.log(math.exp(0) + math.exp(1) + math.exp(3)) - 3]
    expected_dcl = [math.log(math.exp(0.5) + math.exp(-1)) - 2, math.log(math.exp(0) + math.exp(1)) - 3]
    torch.testing.assert_close(infonce, torch.tensor(expected_infonce), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(dcl, torch.tensor(expected_dcl), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("decoupled", [False, True])
def test_symmetric_loss_matches_direct_computation(decoupled):
    generator = torch.Generator().manual_seed(0)
    image, text = torch.randn(3, 4, generator=generator), torch.randn(3, 4, generator=generator)
    loss = global_contrastive_loss(image, text, 2.5, decoupled=decoupled)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert loss.item() == pytest.approx(_direct_symmetric_loss(image, text, 2.5, decoupled), rel=1e-5)


def test_extra_latents_score_the_image_to_text_direction_only():
    generator = torch.Generator().manual_seed(1)
    image, text, image_extra, text_extra = (torch.randn(3, 4, generator=generator) for _ in range(4))
    loss = global_contrastive_loss(image, text, 3.0, decoupled=True,
                                   image_features_i2t=image_extra, text_features_i2t=text_extra)
    expected = _direct_symmetric_loss(image, text, 3.0, True, image_extra, text_extra)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    # gradient reaches the extra latents and the text-to-image latents
    for tensor in (image, text, image_extra, text_extra):
        tensor.requires_grad_(True)
    global_contrastive_loss(image, text, 3.0, decoupled=True,
                            image_features_i2t=image_extra, text_features_i2t=text_extra).backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (image, text, image_extra, text_extra))


def test_dcl_is_stable_at_large_scale_where_exp_overflows():
    image = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    text = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # logit scale 1000 (unclamped) makes exp overflow float32; logsumexp does not
    loss = global_contrastive_loss(image, text, 1000.0, decoupled=True, max_logit_scale=None)
    # row losses: image0: lse{600} - 1000; image1: lse{0} - 800; text0: lse{0} - 1000; text1: lse{600} - 800
    expected = ((600 - 1000) + (0 - 800) + (0 - 1000) + (600 - 800)) / 4
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_logit_scale_is_clamped():
    generator = torch.Generator().manual_seed(2)
    image, text = torch.randn(2, 3, generator=generator), torch.randn(2, 3, generator=generator)
    clamped = global_contrastive_loss(image, text, 500.0, decoupled=True, max_logit_scale=100.0)
    at_max = global_contrastive_loss(image, text, 100.0, decoupled=True, max_logit_scale=100.0)
    assert clamped.item() == at_max.item()


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="text_features"):
        global_contrastive_loss(torch.randn(2, 3), torch.randn(3, 3), 1.0, decoupled=False)
    with pytest.raises(ValueError, match="image_features_i2t and text_features_i2t"):
        global_contrastive_loss(torch.randn(2, 3), torch.randn(2, 3), 1.0, decoupled=False,
                                image_features_i2t=torch.randn(2, 3))
    with pytest.raises(ValueError, match="at least 2 columns"):
        global_contrastive_loss(torch.randn(1, 3), torch.randn(1, 3), 1.0, decoupled=True)
