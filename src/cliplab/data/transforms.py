"""Image preprocessing without torchvision: PIL resize/crop for single images, torch for uint8 batches.

Two entry points:
- `image_transform(config, train)` -> a picklable callable `PIL.Image -> Tensor[3, H, W] float32`
  (eval: open_clip's eval transform; train: random resized crop, optional horizontal flip).
- `images_uint8_to_tensor(images, config)` -> `Tensor[N, 3, H, W] float32` for datasets that arrive
  as uint8 arrays (Fashion-MNIST), normalising a whole batch at once instead of one PIL image each.

The eval transform equals open_clip's `image_transform(..., is_train=False)` on PIL images, pixel
for pixel: torchvision hands a PIL image to PIL's own `resize`, so the same PIL calls with the same
sizes and crop offsets give the same pixels.

    shortest, square S    resize to (S, int(S * long / short)), center crop S x S
    shortest, H x W       open_clip's ResizeKeepRatio (cover the target, sides rounded; always
                          bicubic), center crop H x W
    longest               ResizeKeepRatio fitting inside the target, pad with fill_color, center crop
    squash                resize to H x W
    then                  RGB, [0, 1] floats, (x - mean) / std per channel

A resize to the size the image already has is skipped, as in torchvision. Center crop offsets are
`int(round((side - target) / 2))` (halves round to even), not `(side - target) // 2`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cliplab.data.images import scale_16_bit_gray
from cliplab.data.preprocess_config import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PreprocessConfig

__all__ = ["OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD", "PIL_FILTERS", "ImageTransform", "PreprocessConfig",
           "center_crop_box", "eval_geometry", "image_transform", "images_uint8_to_tensor", "keep_ratio_size",
           "normalize_images", "pil_to_float_tensor", "shortest_side_size"]

PIL_FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}


def shortest_side_size(width: int, height: int, side: int) -> tuple[int, int]:
    """(W, H) after resizing the shortest side to `side`: torchvision's `Resize(side)`, which
    truncates the long side (`int(side * long / short)`)."""
    if width <= height:
        return side, int(side * height / width)
    return int(side * width / height), side


def keep_ratio_size(width: int, height: int, target_hw: tuple[int, int], longest: bool) -> tuple[int, int]:
    """(W, H) after open_clip's `ResizeKeepRatio`: one scale for both sides, chosen so the image
    covers (longest=False) or fits inside (longest=True) the (H, W) target; sides rounded."""
    ratio_h, ratio_w = height / target_hw[0], width / target_hw[1]
    ratio = max(ratio_h, ratio_w) if longest else min(ratio_h, ratio_w)
    return round(width / ratio), round(height / ratio)


def center_crop_box(width: int, height: int, target_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """PIL crop box (left, top, right, bottom) of torchvision's center crop: offsets
    `int(round((side - target) / 2))` (Python rounds halves to even)."""
    target_h, target_w = target_hw
    left, top = int(round((width - target_w) / 2.0)), int(round((height - target_h) / 2.0))
    return left, top, left + target_w, top + target_h


def _resize(image: Image.Image, size_wh: tuple[int, int], resample: int) -> Image.Image:
    """PIL resize, skipped when the size is already right (as torchvision skips it)."""
    return image if image.size == size_wh else image.resize(size_wh, resample)


def _center_crop_or_pad(image: Image.Image, target_hw: tuple[int, int], fill: int) -> Image.Image:
    """Pad a side shorter than the target with `fill` (the extra pixel, if odd, right/bottom), then
    center crop: torchvision's CenterCrop (fill 0) and open_clip's CenterCropOrPad."""
    width, height = image.size
    target_h, target_w = target_hw
    if target_w > width or target_h > height:
        left, top = max(target_w - width, 0) // 2, max(target_h - height, 0) // 2
        padded_size = (max(width, target_w), max(height, target_h))
        bands = len(image.getbands())
        padded = Image.new(image.mode, padded_size, fill if bands == 1 else (fill,) * bands)
        if image.mode == "P":
            padded.putpalette(image.getpalette())
        padded.paste(image, (left, top))
        image = padded
    if image.size == (target_w, target_h):
        return image
    return image.crop(center_crop_box(*image.size, target_hw))


def eval_geometry(image: Image.Image, config: PreprocessConfig) -> Image.Image:
    """open_clip's eval resize and crop for `config`, on the image in its own mode (open_clip
    converts to RGB after this, which matters for palette and RGBA images)."""
    target_hw = config.size_hw
    resample = PIL_FILTERS[config.interpolation]
    if config.resize_mode == "squash":
        return _resize(image, (target_hw[1], target_hw[0]), resample)
    if config.resize_mode == "longest":
        image = _resize(image, keep_ratio_size(*image.size, target_hw, longest=True), resample)
        return _center_crop_or_pad(image, target_hw, config.fill_color)
    if target_hw[0] == target_hw[1]:
        image = _resize(image, shortest_side_size(*image.size, target_hw[0]), resample)
    else:
        # open_clip builds ResizeKeepRatio here without passing the interpolation: always bicubic.
        image = _resize(image, keep_ratio_size(*image.size, target_hw, longest=False), Image.BICUBIC)
    return _center_crop_or_pad(image, target_hw, 0)


class ImageTransform:
    """`PIL.Image -> Tensor[3, H, W] float32`, normalised; picklable for DataLoader workers.

    Eval: `eval_geometry` (open_clip's eval transform), then RGB. Train: RGB, random resized crop,
    optional flip. Grayscale becomes 3 equal channels (16-bit grayscale is first scaled to 8 bits,
    `cliplab.data.images.scale_16_bit_gray`), RGBA loses alpha. In training the random
    draws come from `generator` when given, else from torch's global RNG (which DataLoader seeds
    differently in every worker).
    """

    def __init__(self, config: PreprocessConfig, train: bool, generator: torch.Generator | None = None):
        self.config = config
        self.train = train
        self.generator = generator
        # Made once: a data-loading process calls this for every sample.
        self._mean = torch.tensor(config.mean, dtype=torch.float32)
        self._std = torch.tensor(config.std, dtype=torch.float32)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if not isinstance(image, Image.Image):
            raise ValueError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
        image = scale_16_bit_gray(image)
        if self.train:
            image = self._random_resized_crop(image.convert("RGB"))
            if self.config.train_horizontal_flip and self._uniform() < 0.5:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            image = eval_geometry(image, self.config).convert("RGB")
        return normalize_images(pil_to_float_tensor(image), self._mean, self._std)

    def _uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        return low + (high - low) * float(torch.rand((), generator=self.generator))

    def _random_resized_crop(self, image: Image.Image) -> Image.Image:
        target_height, target_width = self.config.size_hw
        resample = PIL_FILTERS[self.config.interpolation]
        if self.config.train_crop_is_whole_image:  # no draws, and no resize at the size it has
            return _resize(image, (target_width, target_height), resample)
        width, height = image.size
        crop_width, crop_height = _sample_crop_size(
            width, height, self.config.train_crop_scale, self.config.train_crop_ratio, self._uniform)
        left = int(self._uniform(0, width - crop_width + 1)) if width > crop_width else 0
        top = int(self._uniform(0, height - crop_height + 1)) if height > crop_height else 0
        return image.resize((target_width, target_height), resample,
                            box=(left, top, left + crop_width, top + crop_height))

    def __repr__(self) -> str:
        return f"ImageTransform(train={self.train}, config={self.config})"


def _sample_crop_size(width: int, height: int, scale: tuple[float, float],
                      ratio: tuple[float, float], uniform) -> tuple[int, int]:
    """Crop size of a random resized crop: area fraction in `scale`, log-uniform aspect in `ratio`.

    Like the usual Inception crop, try a few draws and fall back to the whole image, so a crop that
    cannot fit never loops forever.
    """
    area = width * height
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * uniform(scale[0], scale[1])
        aspect = math.exp(uniform(log_low, log_high))
        crop_width = round(math.sqrt(target_area * aspect))
        crop_height = round(math.sqrt(target_area / aspect))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            return crop_width, crop_height
    return width, height


def pil_to_float_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> Tensor[3, H, W] float32 in [0, 1]."""
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def normalize_images(images: torch.Tensor, mean: Sequence[float] | torch.Tensor,
                     std: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """images: [..., 3, H, W] float in [0, 1] -> (images - mean) / std, per channel; mean and std: 3
    values each (a tensor of the images' dtype is used without a copy)."""
    mean_tensor = torch.as_tensor(mean, dtype=images.dtype).view(3, 1, 1)
    std_tensor = torch.as_tensor(std, dtype=images.dtype).view(3, 1, 1)
    return (images - mean_tensor) / std_tensor


def image_transform(config: PreprocessConfig, train: bool,
                    generator: torch.Generator | None = None) -> ImageTransform:
    """The transform for `config`: train=True augments (random resized crop, optional flip)."""
    if not isinstance(config, PreprocessConfig):
        raise ValueError(f"config must be a PreprocessConfig, got {type(config).__name__}")
    return ImageTransform(config, train=bool(train), generator=generator)


def images_uint8_to_tensor(images: np.ndarray | torch.Tensor, config: PreprocessConfig,
                           train: bool = False,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """Batch of uint8 images -> Tensor[N, 3, S, S] float32, normalised like `image_transform`.

    images: uint8 [N, H, W] (grayscale) or [N, H, W, C] with C in {1, 3} (numpy/PIL layout).
    Eval: shortest-side resize + center crop (or squash) with bicubic antialiased interpolation;
    skipped when the images already are S x S. Train: per-sample random resized crop (same scale and
    ratio ranges as the PIL path) and optional flip, done for the whole batch by one bilinear
    `grid_sample`, so the two paths agree in distribution, not bit for bit.
    """
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # torch warns on read-only arrays (np.frombuffer, memory maps)
    batch = torch.as_tensor(images)
    if batch.dtype != torch.uint8:
        raise ValueError(f"images must be uint8, got {batch.dtype}")
    if batch.dim() == 3:
        batch = batch.unsqueeze(-1)
    if batch.dim() != 4 or batch.shape[-1] not in (1, 3):
        raise ValueError(f"images must be [N, H, W] or [N, H, W, C] with C in (1, 3), "
                         f"got shape {tuple(torch.as_tensor(images).shape)}")
    floats = batch.permute(0, 3, 1, 2).float().div_(255.0).expand(-1, 3, -1, -1)
    if train:
        floats = _batched_random_resized_crop(floats, config, generator)
    else:
        floats = _batched_resize_and_center_crop(floats, config)
    return normalize_images(floats.contiguous(), config.mean, config.std)


def _batched_resize_and_center_crop(images: torch.Tensor, config: PreprocessConfig) -> torch.Tensor:
    """The PIL eval geometry's sizes and offsets, resized by torch's antialiased interpolation."""
    target_hw = config.size_hw
    height, width = images.shape[-2:]
    if (height, width) == target_hw:
        return images
    if config.resize_mode == "longest" or (config.resize_mode == "shortest" and target_hw[0] != target_hw[1]):
        raise ValueError(f"the uint8 batch path resizes to square shortest-side crops or squashes; "
                         f"resize_mode {config.resize_mode!r} with image_size {config.image_size} "
                         "needs image_transform (PIL)")
    antialias = config.interpolation != "nearest"
    if config.resize_mode == "squash":
        resized = F.interpolate(images, size=target_hw, mode=config.interpolation, antialias=antialias)
        return resized.clamp_(0.0, 1.0)
    new_width, new_height = shortest_side_size(width, height, target_hw[0])
    resized = F.interpolate(images, size=(new_height, new_width), mode=config.interpolation,
                            antialias=antialias)
    left, top, right, bottom = center_crop_box(new_width, new_height, target_hw)
    return resized[..., top:bottom, left:right].clamp_(0.0, 1.0)


def _batched_random_resized_crop(images: torch.Tensor, config: PreprocessConfig,
                                 generator: torch.Generator | None) -> torch.Tensor:
    """Per-sample crop + resize + optional flip as one affine `grid_sample` over the batch."""
    count, _, height, width = images.shape
    scale_low, scale_high = config.train_crop_scale
    ratio_low, ratio_high = (math.log(value) for value in config.train_crop_ratio)
    draws = torch.rand(count, 5, generator=generator, dtype=torch.float64)
    area_fraction = scale_low + (scale_high - scale_low) * draws[:, 0]
    aspect = torch.exp(ratio_low + (ratio_high - ratio_low) * draws[:, 1])
    # Crop sides as fractions of the image sides, clipped so every crop fits inside the image.
    crop_width = torch.sqrt(area_fraction * aspect * height / width).clamp(max=1.0)
    crop_height = torch.sqrt(area_fraction / aspect * width / height).clamp(max=1.0)
    center_x = (draws[:, 2] * 2 - 1) * (1 - crop_width)
    center_y = (draws[:, 3] * 2 - 1) * (1 - crop_height)
    flip = torch.ones(count, dtype=torch.float64)
    if config.train_horizontal_flip:
        flip = torch.where(draws[:, 4] < 0.5, -1.0, 1.0).to(torch.float64)
    theta = torch.zeros(count, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = crop_width * flip
    theta[:, 0, 2] = center_x
    theta[:, 1, 1] = crop_height
    theta[:, 1, 2] = center_y
    grid = F.affine_grid(theta.to(images.dtype), [count, 3, *config.size_hw], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
