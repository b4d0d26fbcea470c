import pytest
import torch

from cliplab.losses.xclip.simsiam import negative_cosine_to_target, simsiam_loss


def test_matches_direct_computation():
    p1 = torch.tensor([[1.0, 0.0], [3.0, 4.0]])
    p2 = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    z1 = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    z2 = torch.tensor([[2.0, 0.0], [4.0, 3.0]])
    # cos(p1_0, z2_0) = 1; cos(p1_1, z2_1) = 24/25; cos(p2_0, z1_0) = 1/sqrt2; cos(p2_1, z1_1) = -1/sqrt2
    expected = (-(1 + 24 / 25) / 2 - (2 ** -0.5 - 2 ** -0.5) / 2) / 2
    assert simsiam_loss(p1, p2, z1, z2).item() == pytest.approx(expected, rel=1e-6)


def test_no_gradient_reaches_the_target_branch():
    generator = torch.Generator().manual_seed(0)
    projections = torch.randn(3, 4, generator=generator, requires_grad=True)
    predictor = torch.randn(4, 4, generator=generator, requires_grad=True)
    predictions = projections @ predictor
    targets = projections * 2.0
    negative_cosine_to_target(predictions, targets).sum().backward()
    # gradient reaches the projections only through the predictor branch
    expected_grad = torch.autograd.grad(
        negative_cosine_to_target(projections @ predictor, (projections * 2.0).detach()).sum(), projections)[0]
    torch.testing.assert_close(projections.grad, expected_grad)
    target_only = torch.randn(3, 4, generator=generator, requires_grad=True)
    prediction_only = torch.randn(3, 4, generator=generator, requires_grad=True)
    simsiam_loss(prediction_only, prediction_only * 2, target_only, target_only * 3).backward()
    assert target_only.grad is None
    assert prediction_only.grad.abs().sum() > 0


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="simsiam inputs"):
        simsiam_loss(torch.randn(2, 3), torch.randn(2, 3), torch.randn(2, 3), torch.randn(3, 3))
