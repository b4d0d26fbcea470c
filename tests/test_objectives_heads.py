import torch

from cliplab.objectives.heads import ExtraLatentProjections, MlmHead, SimClrHead, SimSiamHead


def test_extra_projections_start_as_the_identity():
    projections = ExtraLatentProjections(5)
    image, text = torch.randn(3, 5), torch.randn(3, 5)
    projected_image, projected_text = projections(image, text)
    assert torch.equal(projected_image, image) and torch.equal(projected_text, text)
    assert projections.image_projection.bias is None


def test_head_shapes():
    assert MlmHead(8, 50)(torch.randn(7, 8)).shape == (7, 50)
    assert MlmHead(8, 50)(torch.randn(0, 8)).shape == (0, 50)
    projections, predictions = SimSiamHead(6, 16, 4, 3)(torch.randn(5, 6))
    assert projections.shape == (5, 4) and predictions.shape == (5, 4)
    assert SimClrHead(6, 16, 4)(torch.randn(5, 6)).shape == (5, 4)


def test_simsiam_predictor_follows_the_projector():
    head = SimSiamHead(6, 16, 4, 3).eval()
    embeddings = torch.randn(5, 6)
    projections, predictions = head(embeddings)
    torch.testing.assert_close(projections, head.projector(embeddings))
    torch.testing.assert_close(predictions, head.predictor(projections))
