import math

import pytest
import torch
import torch.nn.functional as F

from cliplab.losses.xclip.simclr import simclr_loss


def _direct_nt_xent(view_1, view_2, temperature):
    embeddings = F.normalize(torch.cat([view_1, view_2]), dim=-1)
    count = embeddings.shape[0]
    half = count // 2
    total = 0.0
    for a in range(count):
        positive = (a + half) % count
        denominator = sum(math.exp(float(embeddings[a] @ embeddings[k]) / temperature)
                          for k in range(count) if k != a)
        total += math.log(denominator) - float(embeddings[a] @ embeddings[positive]) / temperature
    return total / count


@pytest.mark.parametrize("batch", [2, 3])
def test_matches_direct_computation(batch):
    generator = torch.Generator().manual_seed(batch)
    view_1, view_2 = torch.randn(batch, 5, generator=generator), torch.randn(batch, 5, generator=generator)
    loss = simclr_loss(view_1, view_2, temperature=0.5)
    assert loss.item() == pytest.approx(_direct_nt_xent(view_1, view_2, 0.5), rel=1e-5)


def test_low_temperature_is_stable():
    view_1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    view_2 = torch.tensor([[0.8, 0.6], [0.6, 0.8]])
    loss = simclr_loss(view_1, view_2, temperature=1e-3)
    assert torch.isfinite(loss)


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="temperature"):
        simclr_loss(torch.randn(2, 3), torch.randn(2, 3), temperature=0.0)
    with pytest.raises(ValueError, match="view_1_embeddings and view_2_embeddings"):
        simclr_loss(torch.randn(2, 3), torch.randn(3, 3))
