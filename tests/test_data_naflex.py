"""NaFlex preprocessing equals transformers' Siglip2ImageProcessor (its PIL variant: the default one
needs torchvision) on PIL images of any aspect ratio: sizes, patch layout, padding, values."""

import numpy as np
import pytest
import torch
from PIL import Image

from cliplab.data.naflex import NAFLEX_KEYS, NaFlexPreprocess, image_patches, naflex_size
from cliplab.data.preprocess_config import PreprocessConfig
from reference_libraries import transformers

SIZES = [(37, 200), (300, 40), (64, 64), (5, 7), (1000, 13), (257, 255), (16, 16), (3000, 2), (1, 1)]


def siglip2_pil():
    return pytest.importorskip("transformers.models.siglip2.image_processing_pil_siglip2")


def images():
    generator = np.random.default_rng(0)
    rgb = [Image.fromarray(generator.integers(0, 256, (height, width, 3), dtype=np.uint8)) for height, width in SIZES]
    gray = Image.fromarray(generator.integers(0, 256, (50, 90), dtype=np.uint8), "L")
    return rgb + [gray, rgb[0].convert("RGBA")]


@pytest.mark.parametrize("patch_size, max_num_patches", [(16, 256), (8, 64), (4, 30)])
def test_batches_equal_siglip2_image_processors(patch_size, max_num_patches):
    transformers()
    reference = siglip2_pil().Siglip2ImageProcessorPil(patch_size=patch_size, max_num_patches=max_num_patches,
                                                       do_convert_rgb=True, image_mean=[0.5, 0.4, 0.3])
    theirs = reference(images(), return_tensors="pt")
    preprocess = PreprocessConfig(image_size=patch_size, resize_mode="squash", interpolation="bilinear",
                                  mean=(0.5, 0.4, 0.3), std=(0.5, 0.5, 0.5))
    ours = NaFlexPreprocess(preprocess, patch_size, max_num_patches)(images())
    assert tuple(ours) == NAFLEX_KEYS
    for key in NAFLEX_KEYS:
        assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]), key


def test_sizes_equal_siglip2s_search():
    module = siglip2_pil()
    generator = np.random.default_rng(1)
    for height, width, patch, patches in zip(generator.integers(1, 5000, 300), generator.integers(1, 5000, 300),
                                             generator.choice([4, 14, 16], 300), generator.integers(1, 1100, 300)):
        expected = module.get_image_size_for_max_num_patches(int(height), int(width), int(patch), int(patches))
        assert naflex_size(int(height), int(width), int(patch), int(patches)) == expected


def test_patch_layout_is_siglip2s():
    image = torch.randn(3, 12, 20)
    expected = siglip2_pil().convert_image_to_patches(image.numpy(), 4)
    assert torch.equal(image_patches(image, 4), torch.from_numpy(expected))
    batch = torch.randn(2, 3, 8, 4)
    assert torch.equal(image_patches(batch, 4)[1], image_patches(batch[1], 4))


def test_bad_arguments_are_named():
    preprocess = PreprocessConfig(image_size=16)
    with pytest.raises(ValueError, match="max_num_patches must be a positive int, got 0"):
        NaFlexPreprocess(preprocess, 16, 0)
    with pytest.raises(ValueError, match="image must be a PIL.Image.Image, got Tensor"):
        NaFlexPreprocess(preprocess, 16, 4)([torch.zeros(3, 4, 4)])
