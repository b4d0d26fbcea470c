import math

import pytest
import torch
import torch.nn.functional as F

from cliplab.losses.xclip.filip import filip_loss, image_to_text_similarity, text_to_image_similarity


def _direct_filip(image_tokens, text_tokens, text_mask, scale, decoupled):
    """Per pair loops: mean over real tokens of max over patches, and mean over patches of max over
    real tokens; then the symmetric contrastive loss with exp and log written out."""
    image_tokens = F.normalize(image_tokens, dim=-1)
    text_tokens = F.normalize(text_tokens, dim=-1)
    batch = image_tokens.shape[0]
    t2i = torch.zeros(batch, batch)
    i2t = torch.zeros(batch, batch)
    for j in range(batch):
        real = [t for t in range(text_tokens.shape[1]) if text_mask[j, t]]
        for i in range(batch):
            token_patch = text_tokens[j, real] @ image_tokens[i].T  # [M, P]
            t2i[j, i] = token_patch.max(dim=1).values.mean()
            i2t[i, j] = token_patch.max(dim=0).values.mean()
    total = 0.0
    for logits in (scale * t2i, scale * i2t):
        for row in range(batch):
            denominator = sum(math.exp(float(logits[row, k])) for k in range(batch)
                              if not (decoupled and k == row))
            total += math.log(denominator) - float(logits[row, row])
    return t2i, i2t, total / (2 * batch)


def _example(seed=0, batch=3, patches=4, length=5, dim=6):
    generator = torch.Generator().manual_seed(seed)
    image_tokens = torch.randn(batch, patches, dim, generator=generator)
    text_tokens = torch.randn(batch, length, dim, generator=generator)
    text_mask = torch.tensor([[True, True, True, False, False],
                              [True, True, True, True, True],
                              [True, False, False, False, False]])[:batch]
    return image_tokens, text_tokens, text_mask


@pytest.mark.parametrize("tile_size", [1, 2, 32])
def test_similarities_match_direct_loops_for_any_tile(tile_size):
    image_tokens, text_tokens, text_mask = _example()
    expected_t2i, expected_i2t, _ = _direct_filip(image_tokens, text_tokens, text_mask, 1.0, False)
    image_n, text_n = F.normalize(image_tokens, dim=-1), F.normalize(text_tokens, dim=-1)
    text_n = text_n.masked_fill(~text_mask[..., None], 0.0)
    t2i = text_to_image_similarity(text_n, text_mask, image_n, tile_size=tile_size)
    i2t = image_to_text_similarity(image_n, text_n, text_mask, tile_size=tile_size)
    torch.testing.assert_close(t2i, expected_t2i, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(i2t, expected_i2t, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("decoupled", [False, True])
def test_loss_matches_direct_computation(decoupled):
    image_tokens, text_tokens, text_mask = _example(seed=3)
    _, _, expected = _direct_filip(image_tokens, text_tokens, text_mask, 4.0, decoupled)
    loss = filip_loss(image_tokens, text_tokens, text_mask, 4.0, decoupled=decoupled, tile_size=2)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_padding_really_masks_values_and_gradients():
    image_tokens, text_tokens, text_mask = _example(seed=4)
    text_tokens.requires_grad_(True)
    loss = filip_loss(image_tokens, text_tokens, text_mask, 5.0, tile_size=2)
    loss.backward()
    assert (text_tokens.grad[~text_mask] == 0).all()
    assert (text_tokens.grad[text_mask].abs().sum(dim=-1) > 0).all()

    changed = text_tokens.detach().clone()
    changed[~text_mask] = torch.randn(int((~text_mask).sum()), changed.shape[-1]) * 100.0
    changed[0, 3] = float("nan")  # even a non-finite pad latent stays out
    assert filip_loss(image_tokens, changed, text_mask, 5.0, tile_size=2).item() == loss.item()


def test_tiling_does_not_change_gradients():
    image_tokens, text_tokens, text_mask = _example(seed=5)
    gradients = []
    for tile_size in (1, 3):
        image = image_tokens.clone().requires_grad_(True)
        text = text_tokens.clone().requires_grad_(True)
        filip_loss(image, text, text_mask, 3.0, tile_size=tile_size).backward()
        gradients.append((image.grad, text.grad))
    torch.testing.assert_close(gradients[0][0], gradients[1][0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(gradients[0][1], gradients[1][1], rtol=1e-5, atol=1e-7)


def test_bad_input_names_the_argument():
    image_tokens, text_tokens, text_mask = _example()
    with pytest.raises(ValueError, match="text_mask"):
        filip_loss(image_tokens, text_tokens, text_mask.long(), 1.0)
    empty_mask = text_mask.clone()
    empty_mask[1] = False
    with pytest.raises(ValueError, match="text_mask must mark at least one real token"):
        filip_loss(image_tokens, text_tokens, empty_mask, 1.0)
    with pytest.raises(ValueError, match="image_tokens"):
        filip_loss(image_tokens[:, 0], text_tokens, text_mask, 1.0)
    with pytest.raises(ValueError, match="tile_size"):
        filip_loss(image_tokens, text_tokens, text_mask, 1.0, tile_size=0)
