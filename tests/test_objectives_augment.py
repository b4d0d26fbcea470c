import pytest
import torch

from cliplab.objectives.augment import drop_tokens, random_resized_crop_and_flip


def test_full_crop_without_flip_is_the_identity_and_flip_mirrors():
    images = torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    same = random_resized_crop_and_flip(images, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_probability=0.0,
                                        generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(same, images, rtol=0, atol=1e-5)
    mirrored = random_resized_crop_and_flip(images, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0),
                                            flip_probability=1.0, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(mirrored, images.flip(-1), rtol=0, atol=1e-5)


def test_crop_samples_the_drawn_window():
    width = 8
    # a horizontal ramp: bilinear sampling reproduces any interior coordinate exactly
    ramp = torch.arange(width, dtype=torch.float32).expand(2, 1, width, width).contiguous()
    cropped = random_resized_crop_and_flip(ramp, crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0),
                                           flip_probability=0.0, generator=torch.Generator().manual_seed(5))
    draws = torch.rand(2, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    crop_side = 0.5  # sqrt of the area fraction 0.25 at ratio 1
    for image in range(2):
        center_x = (draws[image, 2] * 2 - 1) * (1 - crop_side)
        for column in range(width):
            output_coordinate = (2 * column + 1) / width - 1
            input_coordinate = crop_side * output_coordinate + center_x
            expected = ((input_coordinate + 1) * width - 1) / 2
            assert cropped[image, 0, 0, column].item() == pytest.approx(float(expected), abs=1e-4)


def test_same_seed_same_views():
    images = torch.randn(3, 3, 8, 8)
    options = dict(crop_scale=(0.3, 1.0), crop_ratio=(0.75, 1.33), flip_probability=0.5)
    first = random_resized_crop_and_flip(images, generator=torch.Generator().manual_seed(9), **options)
    second = random_resized_crop_and_flip(images, generator=torch.Generator().manual_seed(9), **options)
    assert torch.equal(first, second) and first.shape == images.shape


PAD, SOT, EOT = 0, 1, 2


def test_drop_tokens_deletes_ordinary_tokens_and_closes_up():
    tokens = torch.tensor([[SOT, 10, 11, 12, 13, EOT, PAD, PAD],
                           [SOT, 20, 21, EOT, PAD, PAD, PAD, PAD]])
    draws = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(3))
    augmented = drop_tokens(tokens, protected_ids=(SOT, EOT), pad_id=PAD, drop_probability=0.5,
                            generator=torch.Generator().manual_seed(3))
    for row in range(2):
        kept = [int(t) for t, draw in zip(tokens[row], draws[row])
                if t != PAD and (t in (SOT, EOT) or draw >= 0.5)]
        assert augmented[row].tolist() == kept + [PAD] * (tokens.shape[1] - len(kept))


def test_drop_nothing_is_the_identity_and_bad_probability_is_rejected():
    tokens = torch.tensor([[SOT, 5, 6, EOT, PAD]])
    assert torch.equal(drop_tokens(tokens, protected_ids=(SOT, EOT), pad_id=PAD, drop_probability=0.0), tokens)
    with pytest.raises(ValueError, match="drop_probability"):
        drop_tokens(tokens, protected_ids=(SOT, EOT), pad_id=PAD, drop_probability=1.0)
    with pytest.raises(ValueError, match="images"):
        random_resized_crop_and_flip(torch.randn(3, 8, 8), crop_scale=(0.5, 1.0), crop_ratio=(1.0, 1.0),
                                     flip_probability=0.5)
