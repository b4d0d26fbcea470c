"""NaFlex input (SigLIP2's native-aspect-ratio models): images as padded sequences of patches.

A batch is three tensors, named as Hugging Face's `Siglip2ImageProcessor` names them:

    pixel_values           Float[B, N, P * P * 3]  each image's patches, row by row, then padding
    pixel_attention_mask   Int[B, N]               1 for a real patch, 0 for padding
    spatial_shapes         Long[B, 2]              the image's grid of patches (rows, columns)

N is `max_num_patches`. A patch's P * P * 3 values run over its pixel rows, then columns, then the
RGB channels (`image_patches`).

`NaFlexPreprocess` makes them from PIL images of any size, as `Siglip2ImageProcessor` does (its PIL
variant; its default, faster variant needs torchvision and gives the same sizes): convert to RGB;
resize (`interpolation`, bilinear in SigLIP2) to the largest size whose sides are multiples of P,
scaled by one factor from the image's own, with at most `max_num_patches` patches and at least one
per side (`naflex_size`); scale to [0, 1]; normalise with mean / std; cut into patches; pad.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from cliplab.data.images import scale_16_bit_gray
from cliplab.data.preprocess_config import PreprocessConfig
from cliplab.data.transforms import PIL_FILTERS, normalize_images, pil_to_float_tensor

NAFLEX_KEYS = ("pixel_values", "pixel_attention_mask", "spatial_shapes")
# The bounds and resolution of Siglip2ImageProcessor's search for the scale.
_SCALE_RESOLUTION = 1e-5
_SCALE_BOUNDS = (_SCALE_RESOLUTION / 10, 100.0)


def image_patches(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """images [..., 3, H, W] (H, W multiples of P) -> patches [..., (H / P) * (W / P), P * P * 3],
    patches row by row, each over its pixel rows, columns, then channels."""
    *batch, channels, height, width = images.shape
    rows, columns = height // patch_size, width // patch_size
    grid = images.reshape(*batch, channels, rows, patch_size, columns, patch_size)
    order = tuple(range(len(batch)))
    first = len(batch)
    grid = grid.permute(*order, first + 1, first + 3, first + 2, first + 4, first)
    return grid.reshape(*batch, rows * columns, patch_size * patch_size * channels)


def _scaled_side(scale: float, side: int, patch_size: int) -> int:
    return max(patch_size, math.ceil(side * scale / patch_size) * patch_size)


def naflex_size(height: int, width: int, patch_size: int, max_num_patches: int) -> tuple[int, int]:
    """(H', W'): the image scaled by one factor, each side rounded up to a multiple of P (at least
    P), for the largest factor (found by bisection to 1e-5, as Siglip2ImageProcessor finds it)
    whose patch count is at most `max_num_patches`."""
    low, high = _SCALE_BOUNDS
    while high - low >= _SCALE_RESOLUTION:
        middle = (low + high) / 2
        patches = (_scaled_side(middle, height, patch_size) // patch_size) * (
            _scaled_side(middle, width, patch_size) // patch_size)
        if patches <= max_num_patches:
            low = middle
        else:
            high = middle
    return _scaled_side(low, height, patch_size), _scaled_side(low, width, patch_size)


@dataclass(frozen=True)
class NaFlexPreprocess:
    """PIL images -> {pixel_values, pixel_attention_mask, spatial_shapes} (module docstring).

    preprocess: the model's `PreprocessConfig` (its interpolation, mean and std are used; its size
    is the fixed resolution, which NaFlex replaces). patch_size: P. max_num_patches: N.
    """

    preprocess: PreprocessConfig
    patch_size: int
    max_num_patches: int

    def __post_init__(self) -> None:
        for name in ("patch_size", "max_num_patches"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")

    def image(self, image: Image.Image) -> tuple[torch.Tensor, tuple[int, int]]:
        """One image -> (patches [n, P * P * 3], (rows, columns)), n = rows * columns <= N."""
        if not isinstance(image, Image.Image):
            raise ValueError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
        image = scale_16_bit_gray(image).convert("RGB")
        height, width = naflex_size(image.height, image.width, self.patch_size, self.max_num_patches)
        resized = image.resize((width, height), PIL_FILTERS[self.preprocess.interpolation])
        pixels = normalize_images(pil_to_float_tensor(resized), self.preprocess.mean, self.preprocess.std)
        return image_patches(pixels, self.patch_size), (height // self.patch_size, width // self.patch_size)

    def __call__(self, images: Image.Image | Sequence[Image.Image]) -> dict[str, torch.Tensor]:
        """One image or B of them -> the batch's three tensors (module docstring)."""
        images = [images] if isinstance(images, Image.Image) else list(images)
        width = self.patch_size * self.patch_size * 3
        pixel_values = torch.zeros(len(images), self.max_num_patches, width)
        mask = torch.zeros(len(images), self.max_num_patches, dtype=torch.int32)
        shapes = torch.zeros(len(images), 2, dtype=torch.long)
        for index, image in enumerate(images):
            patches, grid = self.image(image)
            pixel_values[index, :len(patches)] = patches
            mask[index, :len(patches)] = 1
            shapes[index] = torch.tensor(grid)
        return dict(zip(NAFLEX_KEYS, (pixel_values, mask, shapes)))
