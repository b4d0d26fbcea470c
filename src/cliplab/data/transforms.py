"""Image preprocessing without torchvision: PIL resize/crop for single images, torch for uint8 batches.

Two entry points:
- `image_transform(config, train)` -> a picklable callable `PIL.Image -> Tensor[3, S, S] float32`
  (eval: resize shortest side, center crop; train: random resized crop, optional horizontal flip).
- `images_uint8_to_tensor(images, config)` -> `Tensor[N, 3, S, S] float32` for datasets that arrive
  as uint8 arrays (Fashion-MNIST), normalising a whole batch at once instead of one PIL image each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cliplab.data.images import to_rgb

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_PIL_INTERPOLATIONS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}
_RESIZE_MODES = ("shortest", "squash")


@dataclass(kw_only=True)
class PreprocessConfig:
    """How images become model input.

    image_size: side S of the square output. mean/std: per-channel normalisation (RGB order).
    resize_mode: "shortest" (resize the shortest side to S, then center crop) or "squash" (resize both
    sides to S, ignoring aspect ratio). interpolation: PIL filter for resizing.
    train_crop_scale: (min, max) area fraction of the random resized crop used in training.
    train_crop_ratio: (min, max) aspect ratio of that crop.
    train_horizontal_flip: flip with probability 0.5 in training.
    """

    image_size: int
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD
    resize_mode: str = "shortest"
    interpolation: str = "bicubic"
    train_crop_scale: tuple[float, float] = (0.9, 1.0)
    train_crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    train_horizontal_flip: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or self.image_size <= 0:
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        self.mean = _float_triple("mean", self.mean)
        self.std = _float_triple("std", self.std)
        if any(value <= 0 for value in self.std):
            raise ValueError(f"std must be positive in every channel, got {self.std}")
        if self.resize_mode not in _RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {_RESIZE_MODES}, got {self.resize_mode!r}")
        if self.interpolation not in _PIL_INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {tuple(_PIL_INTERPOLATIONS)}, got {self.interpolation!r}")
        self.train_crop_scale = _float_range("train_crop_scale", self.train_crop_scale, upper=1.0)
        self.train_crop_ratio = _float_range("train_crop_ratio", self.train_crop_ratio, upper=None)
        if not isinstance(self.train_horizontal_flip, bool):
            raise ValueError(f"train_horizontal_flip must be a bool, got {self.train_horizontal_flip!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "PreprocessConfig":
        known = {name for name in cls.__dataclass_fields__}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown preprocess keys {unknown}; expected a subset of {sorted(known)}")
        return cls(**values)


def _float_triple(name: str, values: Sequence[float]) -> tuple[float, float, float]:
    if isinstance(values, (str, bytes)) or len(values) != 3:
        raise ValueError(f"{name} must hold 3 numbers (R, G, B), got {values!r}")
    return tuple(float(value) for value in values)


def _float_range(name: str, values: Sequence[float], upper: float | None) -> tuple[float, float]:
    if isinstance(values, (str, bytes)) or len(values) != 2:
        raise ValueError(f"{name} must be a (min, max) pair, got {values!r}")
    low, high = float(values[0]), float(values[1])
    if not 0 < low <= high or (upper is not None and high > upper):
        bound = f" <= {upper}" if upper is not None else ""
        raise ValueError(f"{name} must satisfy 0 < min <= max{bound}, got {values!r}")
    return low, high


class ImageTransform:
    """`PIL.Image -> Tensor[3, S, S] float32`, normalised; picklable for DataLoader workers.

    Grayscale, palette and RGBA images are converted to RGB first (grayscale becomes 3 equal
    channels; 16-bit grayscale is scaled to 8 bits, `cliplab.data.images.to_rgb`). In training the random draws come from `generator` when given, else from torch's global
    RNG (which DataLoader seeds differently in every worker).
    """

    def __init__(self, config: PreprocessConfig, train: bool, generator: torch.Generator | None = None):
        self.config = config
        self.train = train
        self.generator = generator

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if not isinstance(image, Image.Image):
            raise ValueError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
        image = to_rgb(image)
        if self.train:
            image = self._random_resized_crop(image)
            if self.config.train_horizontal_flip and self._uniform() < 0.5:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            image = self._resize_and_center_crop(image)
        return _normalize(_pil_to_float_tensor(image), self.config.mean, self.config.std)

    def _uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        return low + (high - low) * float(torch.rand((), generator=self.generator))

    def _resize_and_center_crop(self, image: Image.Image) -> Image.Image:
        size = self.config.image_size
        resample = _PIL_INTERPOLATIONS[self.config.interpolation]
        if self.config.resize_mode == "squash":
            return image.resize((size, size), resample) if image.size != (size, size) else image
        width, height = image.size
        scale = size / min(width, height)
        new_width, new_height = max(size, round(width * scale)), max(size, round(height * scale))
        if (new_width, new_height) != (width, height):
            image = image.resize((new_width, new_height), resample)
        left, top = (new_width - size) // 2, (new_height - size) // 2
        return image.crop((left, top, left + size, top + size))

    def _random_resized_crop(self, image: Image.Image) -> Image.Image:
        width, height = image.size
        crop_width, crop_height = _sample_crop_size(
            width, height, self.config.train_crop_scale, self.config.train_crop_ratio, self._uniform)
        left = int(self._uniform(0, width - crop_width + 1)) if width > crop_width else 0
        top = int(self._uniform(0, height - crop_height + 1)) if height > crop_height else 0
        size = self.config.image_size
        return image.resize((size, size), _PIL_INTERPOLATIONS[self.config.interpolation],
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


def _pil_to_float_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image -> Tensor[3, H, W] float32 in [0, 1]."""
    array = np.asarray(image, dtype=np.uint8)
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)


def _normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """images: [..., 3, H, W] float in [0, 1] -> (images - mean) / std, per channel."""
    mean_tensor = torch.tensor(mean, dtype=images.dtype).view(3, 1, 1)
    std_tensor = torch.tensor(std, dtype=images.dtype).view(3, 1, 1)
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
    return _normalize(floats.contiguous(), config.mean, config.std)


def _batched_resize_and_center_crop(images: torch.Tensor, config: PreprocessConfig) -> torch.Tensor:
    size = config.image_size
    height, width = images.shape[-2:]
    if (height, width) == (size, size):
        return images
    mode = "bicubic" if config.interpolation == "bicubic" else (
        "bilinear" if config.interpolation == "bilinear" else "nearest")
    antialias = mode != "nearest"
    if config.resize_mode == "squash":
        resized = F.interpolate(images, size=(size, size), mode=mode, antialias=antialias)
        return resized.clamp_(0.0, 1.0)
    scale = size / min(height, width)
    new_height, new_width = max(size, round(height * scale)), max(size, round(width * scale))
    resized = F.interpolate(images, size=(new_height, new_width), mode=mode, antialias=antialias)
    top, left = (new_height - size) // 2, (new_width - size) // 2
    return resized[..., top:top + size, left:left + size].clamp_(0.0, 1.0)


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
    size = config.image_size
    grid = F.affine_grid(theta.to(images.dtype), [count, 3, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
