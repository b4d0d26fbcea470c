import pytest
import torch

from cliplab.losses.xclip.dcl import global_contrastive_loss
from cliplab.losses.xclip.multiview import multiview_contrastive_loss


def _views(seed, count):
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(3, 4, generator=generator) for _ in range(count)]


@pytest.mark.parametrize("decoupled", [False, True])
def test_mean_over_view_pairs_except_the_original_pair(decoupled):
    image, image_aug, text, text_aug = _views(0, 4)
    loss = multiview_contrastive_loss([image, image_aug], [text, text_aug], 2.0, decoupled=decoupled)
    expected = (global_contrastive_loss(image_aug, text, 2.0, decoupled=decoupled)
                + global_contrastive_loss(image, text_aug, 2.0, decoupled=decoupled)
                + global_contrastive_loss(image_aug, text_aug, 2.0, decoupled=decoupled)) / 3
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_only_augmented_images():
    image, image_aug, text = _views(1, 3)
    loss = multiview_contrastive_loss([image, image_aug], [text], 2.0)
    assert loss.item() == pytest.approx(global_contrastive_loss(image_aug, text, 2.0, decoupled=False).item(),
                                        rel=1e-6)


def test_extra_latents_follow_their_views():
    image, image_aug, text, text_aug, image_x, image_aug_x, text_x, text_aug_x = _views(2, 8)
    loss = multiview_contrastive_loss([image, image_aug], [text, text_aug], 2.0,
                                      image_views_i2t=[image_x, image_aug_x], text_views_i2t=[text_x, text_aug_x])
    pairs = [((image_aug, text), (image_aug_x, text_x)), ((image, text_aug), (image_x, text_aug_x)),
             ((image_aug, text_aug), (image_aug_x, text_aug_x))]
    expected = sum(global_contrastive_loss(i, t, 2.0, decoupled=False, image_features_i2t=ix, text_features_i2t=tx)
                   for (i, t), (ix, tx) in pairs) / 3
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_needs_an_augmented_view():
    image, text = _views(3, 2)
    with pytest.raises(ValueError, match="augmented"):
        multiview_contrastive_loss([image], [text], 1.0)
    with pytest.raises(ValueError, match="image_views"):
        multiview_contrastive_loss(image, [text], 1.0)
