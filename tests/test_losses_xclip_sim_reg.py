import pytest
import torch
import torch.nn.functional as F

from cliplab.losses.xclip.sim_reg import similarity_regularization_loss


def test_matches_direct_computation():
    generator = torch.Generator().manual_seed(0)
    image, text = torch.randn(3, 4, generator=generator), torch.randn(3, 4, generator=generator)
    image_n, text_n = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    total = 0.0
    for i in range(3):
        for j in range(3):
            if i != j:
                total += float(image_n[i] @ image_n[j] - text_n[i] @ text_n[j]) ** 2
    assert similarity_regularization_loss(image, text).item() == pytest.approx(total / 6, rel=1e-5)


def test_zero_when_geometries_agree_and_gradient_reaches_both():
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(3, 4, generator=generator)
    rotation = torch.linalg.qr(torch.randn(4, 4, generator=generator)).Q
    assert similarity_regularization_loss(image, image @ rotation).item() == pytest.approx(0.0, abs=1e-6)
    image.requires_grad_(True)
    text = torch.randn(3, 4, generator=generator, requires_grad=True)
    similarity_regularization_loss(image, text).backward()
    assert image.grad.abs().sum() > 0 and text.grad.abs().sum() > 0


def test_needs_two_pairs():
    with pytest.raises(ValueError, match="at least 2 pairs"):
        similarity_regularization_loss(torch.randn(1, 3), torch.randn(1, 3))
