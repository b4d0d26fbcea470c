"""Image preprocessing: open_clip's eval geometry and normalisation, training crops, the uint8 batch path."""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from cliplab.data.transforms import (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PreprocessConfig, center_crop_box,
                                     image_transform, images_uint8_to_tensor, keep_ratio_size,
                                     shortest_side_size)
from reference_libraries import open_clip


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


@pytest.mark.parametrize("size", [(28, 28), (48, 32)])
def test_a_crop_of_scale_and_ratio_one_is_the_whole_image_resized_without_draws(size):
    # The default run's training transform: no random draw, the same pixels as the PIL calls spelled out.
    config = PreprocessConfig(image_size=28, mean=(0.286,) * 3, std=(0.353,) * 3, train_crop_scale=(1.0, 1.0),
                              train_crop_ratio=(1.0, 1.0), train_horizontal_flip=False)
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (*size[::-1], 3), dtype=np.uint8))
    generator = torch.Generator().manual_seed(0)
    output = image_transform(config, train=True, generator=generator)(image)
    assert torch.equal(generator.get_state(), torch.Generator().manual_seed(0).get_state())
    resized = image if size == (28, 28) else image.resize((28, 28), Image.BICUBIC)
    pixels = torch.from_numpy(np.asarray(resized, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
    assert torch.equal(output, (pixels - 0.286) / 0.353)


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


# open_clip's eval transform, pinned in closed form: torchvision hands PIL images to PIL's resize, so
# the expected pixels are PIL calls with the sizes and crop offsets torchvision computes (written out
# as numbers below), then [0, 1] floats normalised per channel.

def random_image(width, height, seed=0, mode="RGB"):
    channels = {"RGB": 3, "RGBA": 4}.get(mode)
    shape = (height, width, channels) if channels else (height, width)
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8), mode=mode)


def normalised(image, config):
    array = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)
    mean, std = torch.tensor(config.mean).view(3, 1, 1), torch.tensor(config.std).view(3, 1, 1)
    return (array.float() / 255.0 - mean) / std


def test_size_and_offset_rules():
    assert shortest_side_size(37, 23, 16) == (25, 16)  # 16 * 37 / 23 = 25.7: truncated, not rounded
    assert shortest_side_size(23, 40, 16) == (16, 27)
    assert center_crop_box(25, 16, (16, 16)) == (4, 0, 20, 16)  # (25 - 16) / 2 = 4.5 -> 4
    assert center_crop_box(27, 16, (16, 16)) == (6, 0, 22, 16)  # 5.5 -> 6
    assert center_crop_box(16, 19, (16, 16)) == (0, 2, 16, 18)  # 1.5 -> 2 (not 3 // 2 = 1)
    assert keep_ratio_size(20, 10, (8, 8), longest=True) == (8, 4)
    assert keep_ratio_size(23, 9, (10, 7), longest=False) == (26, 10)


def test_keep_ratio_sizes_equal_open_clips():
    get_params = open_clip().transform.ResizeKeepRatio.get_params
    for width, height in [(37, 23), (23, 37), (20, 10), (9, 31), (64, 64), (225, 100)]:
        for target_hw in [(8, 8), (10, 7), (7, 12), (224, 224)]:
            for longest in (False, True):
                expected_h, expected_w = get_params(Image.new("RGB", (width, height)), target_hw, float(longest))
                assert keep_ratio_size(width, height, target_hw, longest) == (expected_w, expected_h)


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_shortest_square_eval_pixels(interpolation):
    config = PreprocessConfig(image_size=16, interpolation=interpolation)
    resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR}[interpolation]
    transform = image_transform(config, train=False)
    wide, tall, exact = random_image(37, 23, 1), random_image(23, 40, 2), random_image(16, 19, 3)
    assert torch.equal(transform(wide), normalised(wide.resize((25, 16), resample).crop((4, 0, 20, 16)), config))
    assert torch.equal(transform(tall), normalised(tall.resize((16, 27), resample).crop((0, 6, 16, 22)), config))
    # Already 16 on the short side: no resize at all, only the crop.
    assert torch.equal(transform(exact), normalised(exact.crop((0, 2, 16, 18)), config))


def test_shortest_non_square_resizes_bicubic_to_cover_then_crops():
    config = PreprocessConfig(image_size=(10, 7), interpolation="bilinear")
    image = random_image(23, 9, 4)
    expected = image.resize((26, 10), Image.BICUBIC).crop((10, 0, 17, 10))  # open_clip ignores bilinear here
    output = image_transform(config, train=False)(image)
    assert output.shape == (3, 10, 7) and torch.equal(output, normalised(expected, config))


@pytest.mark.parametrize("target, size, top", [(8, (8, 4), 2), (9, (9, 4), 2)])
def test_longest_fits_inside_and_pads_with_fill_color(target, size, top):
    config = PreprocessConfig(image_size=target, resize_mode="longest", fill_color=200)
    image = random_image(20, 10, 5)
    canvas = Image.new("RGB", (target, target), (200, 200, 200))
    canvas.paste(image.resize(size, Image.BICUBIC), (0, top))  # odd padding: the extra row at the bottom
    output = image_transform(config, train=False)(image)
    assert torch.equal(output, normalised(canvas, config))
    fill = (200 / 255 - torch.tensor(config.mean)) / torch.tensor(config.std)
    assert torch.equal(output[:, :top], fill.view(3, 1, 1).expand(3, top, target))


def test_squash_resizes_to_height_by_width():
    config = PreprocessConfig(image_size=(6, 11), resize_mode="squash")
    image = random_image(23, 9, 6)
    assert torch.equal(image_transform(config, train=False)(image),
                       normalised(image.resize((11, 6), Image.BICUBIC), config))


def test_rgb_conversion_comes_after_the_geometry_as_in_open_clip():
    config = PreprocessConfig(image_size=8)
    palette = random_image(13, 9, 7).convert("P", palette=Image.ADAPTIVE, colors=16)
    rgba = random_image(13, 9, 8, mode="RGBA")
    for image in (palette, rgba):
        geometry_first = normalised(image.resize((11, 8), Image.BICUBIC).crop((2, 0, 10, 8)), config)
        convert_first = normalised(image.convert("RGB").resize((11, 8), Image.BICUBIC).crop((2, 0, 10, 8)), config)
        output = image_transform(config, train=False)(image)
        assert torch.equal(output, geometry_first) and not torch.equal(output, convert_first)


def test_equals_hf_clip_image_processor_except_where_its_crop_offset_floors():
    """transformers' PIL CLIP processor makes the same PIL calls but offsets the crop by
    `(side - crop) // 2`: equal pixels unless (side - crop) % 4 == 3."""
    processor_class = pytest.importorskip("transformers.models.clip.image_processing_pil_clip").CLIPImageProcessorPil
    processor = processor_class(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    transform = image_transform(PreprocessConfig(image_size=16), train=False)
    for (width, height), offsets_agree in [((37, 23), True), ((64, 48), True), ((23, 40), False)]:
        image = random_image(width, height, 9)
        reference = torch.from_numpy(processor(image, return_tensors="np")["pixel_values"][0])
        assert torch.equal(transform(image), reference) == offsets_agree


def test_uint8_batch_path_geometry():
    images = np.random.default_rng(2).integers(0, 256, (3, 19, 16), dtype=np.uint8)
    squash = images_uint8_to_tensor(images, PreprocessConfig(image_size=(6, 10), resize_mode="squash"))
    assert squash.shape == (3, 3, 6, 10)
    config = PreprocessConfig(image_size=16, interpolation="nearest")
    cropped = images_uint8_to_tensor(images, config)  # short side already 16: crop rows 2..17
    expected = torch.stack([normalised(Image.fromarray(image).crop((0, 2, 16, 18)), config) for image in images])
    assert torch.equal(cropped, expected)
    with pytest.raises(ValueError, match="resize_mode 'longest' .* needs image_transform"):
        images_uint8_to_tensor(images, PreprocessConfig(image_size=8, resize_mode="longest"))


def test_a_16_bit_grayscale_image_is_scaled_not_clipped():
    values = np.arange(0, 65536, 4096, dtype=np.uint16).reshape(4, 4)
    transform = image_transform(PreprocessConfig(image_size=4), train=False)
    assert torch.equal(transform(Image.fromarray(values)), transform(Image.fromarray((values >> 8).astype(np.uint8))))
