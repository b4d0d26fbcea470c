"""Image preprocessing: eval geometry and normalisation, training crops, the uint8 batch path."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from cliplab.data.transforms import (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PreprocessConfig, image_transform,
                                     images_uint8_to_tensor)


def test_eval_normalises_a_constant_image_exactly():
    transform = image_transform(PreprocessConfig(image_size=4), train=False)
    output = transform(Image.new("RGB", (4, 4), (255, 0, 51)))
    assert output.shape == (3, 4, 4) and output.dtype == torch.float32
    expected = [(value - mean) / std for value, mean, std in zip((1.0, 0.0, 0.2), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)]
    for channel, value in enumerate(expected):
        torch.testing.assert_close(output[channel], torch.full((4, 4), value))


def test_eval_resizes_shortest_side_then_center_crops():
    # Left half black, right half white, 40 wide x 20 high: the 10x10 output is the middle of a 20x10.
    array = np.zeros((20, 40), dtype=np.uint8)
    array[:, 20:] = 255
    config = PreprocessConfig(image_size=10, mean=(0, 0, 0), std=(1, 1, 1), interpolation="nearest")
    output = image_transform(config, train=False)(Image.fromarray(array))
    assert output.shape == (3, 10, 10)
    assert output[:, :, :5].max() == 0.0 and output[:, :, 5:].min() == 1.0
    squash = PreprocessConfig(image_size=10, mean=(0, 0, 0), std=(1, 1, 1), interpolation="nearest",
                              resize_mode="squash")
    squashed = image_transform(squash, train=False)(Image.fromarray(array))
    assert squashed[0, 0].tolist() == [0.0] * 5 + [1.0] * 5


def test_grayscale_becomes_three_equal_channels():
    image = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8), mode="L")
    output = image_transform(PreprocessConfig(image_size=8, mean=(0.5,) * 3, std=(0.5,) * 3), train=False)(image)
    assert torch.equal(output[0], output[1]) and torch.equal(output[1], output[2])


def test_train_transform_is_random_reproducible_and_picklable():
    config = PreprocessConfig(image_size=16, train_crop_scale=(0.3, 0.6), train_horizontal_flip=True)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8))
    first = image_transform(config, train=True, generator=torch.Generator().manual_seed(0))
    second = image_transform(config, train=True, generator=torch.Generator().manual_seed(0))
    outputs = [first(image) for _ in range(3)]
    assert all(output.shape == (3, 16, 16) for output in outputs)
    assert torch.equal(outputs[0], second(image))
    assert not torch.equal(outputs[0], outputs[1])
    restored = pickle.loads(pickle.dumps(first))
    assert torch.equal(restored(image), first(image))


def test_uint8_batch_path_matches_pil_eval_path():
    config = PreprocessConfig(image_size=28, mean=(0.286,) * 3, std=(0.353,) * 3)
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    batched = images_uint8_to_tensor(images, config)
    assert batched.shape == (5, 3, 28, 28) and batched.dtype == torch.float32
    transform = image_transform(config, train=False)
    expected = torch.stack([transform(Image.fromarray(image)) for image in images])
    torch.testing.assert_close(batched, expected)
    torch.testing.assert_close(images_uint8_to_tensor(images[..., None], config), expected)


def test_uint8_batch_path_resizes_and_augments():
    config = PreprocessConfig(image_size=16, train_horizontal_flip=True)
    images = torch.full((4, 32, 24, 3), 200, dtype=torch.uint8)
    assert images_uint8_to_tensor(images, config).shape == (4, 3, 16, 16)
    augmented = images_uint8_to_tensor(images, config, train=True, generator=torch.Generator().manual_seed(0))
    constant = (200 / 255 - torch.tensor(config.mean)) / torch.tensor(config.std)
    torch.testing.assert_close(augmented, constant.view(1, 3, 1, 1).expand(4, 3, 16, 16))
    ramp = torch.arange(32, dtype=torch.uint8).mul(8).view(1, 1, 32).expand(64, 32, 32).contiguous()
    crops = images_uint8_to_tensor(ramp, PreprocessConfig(image_size=8, train_crop_scale=(0.2, 0.4),
                                                          train_horizontal_flip=True),
                                   train=True, generator=torch.Generator().manual_seed(1))
    slopes = crops[:, 0, 0, -1] - crops[:, 0, 0, 0]
    assert (slopes > 0).any() and (slopes < 0).any(), "flips happen for some samples only"
    assert len({round(float(value), 4) for value in crops[:, 0, 0, 0]}) > 1, "crops differ per sample"


def test_bad_inputs():
    with pytest.raises(ValueError, match="std must be positive"):
        PreprocessConfig(image_size=8, std=(1, 0, 1))
    with pytest.raises(ValueError, match="mean must hold 3 numbers"):
        PreprocessConfig(image_size=8, mean=(0.5,))
    with pytest.raises(ValueError, match=r"train_crop_scale must satisfy 0 < min <= max <= 1.0"):
        PreprocessConfig(image_size=8, train_crop_scale=(0.5, 1.2))
    with pytest.raises(ValueError, match="images must be uint8"):
        images_uint8_to_tensor(np.zeros((2, 8, 8), dtype=np.float32), PreprocessConfig(image_size=8))
    with pytest.raises(ValueError, match=r"\[N, H, W\] or \[N, H, W, C\]"):
        images_uint8_to_tensor(np.zeros((2, 8, 8, 4), dtype=np.uint8), PreprocessConfig(image_size=8))
    with pytest.raises(ValueError, match="image must be a PIL.Image.Image"):
        image_transform(PreprocessConfig(image_size=8), train=False)(np.zeros((8, 8)))


def test_a_16_bit_grayscale_image_is_scaled_not_clipped():
    values = np.arange(0, 65536, 4096, dtype=np.uint16).reshape(4, 4)
    transform = image_transform(PreprocessConfig(image_size=4), train=False)
    assert torch.equal(transform(Image.fromarray(values)), transform(Image.fromarray((values >> 8).astype(np.uint8))))
