"""`PreprocessConfig`: how images become model input, and its open_clip and Hugging Face spellings.

open_clip keeps it as `preprocess_cfg` in open_clip_config.json:

    {"size": 224 or [h, w], "mode": "RGB", "mean": [...], "std": [...],
     "interpolation": "bicubic" | "bilinear", "resize_mode": "shortest" | "longest" | "squash",
     "fill_color": 0}

Hugging Face keeps it in preprocessor_config.json (`CLIPImageProcessor`, `SiglipImageProcessor`):

    size {"shortest_edge": S} + do_center_crop + crop_size {"height": S, "width": S}   -> "shortest"
    size {"height": H, "width": W}, no center crop                                      -> "squash"
    resample (PIL filter code: 0 nearest, 2 bilinear, 3 bicubic), image_mean, image_std

`from_open_clip` / `to_open_clip` and `from_hf_image_processor` / `to_hf_image_processor` convert;
a setting the other side cannot express is refused with a UserError naming it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from cliplab.errors import UserError

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")
RESIZE_MODES = ("shortest", "longest", "squash")
# PIL's filter codes, which Hugging Face's `resample` holds.
PIL_RESAMPLE_CODES = {"nearest": 0, "bilinear": 2, "bicubic": 3}
HF_PROCESSOR_TYPES = ("CLIPImageProcessor", "SiglipImageProcessor")
_RESCALE_FACTOR = 1 / 255


@dataclass(kw_only=True)
class PreprocessConfig:
    """How images become model input.

    image_size: side S of the square output (an int), or (H, W) for a non-square one.
    mean/std: per-channel normalisation (RGB order).
    resize_mode: "shortest" (resize so the image covers the output, then center crop), "longest"
    (resize so the image fits inside, then pad with fill_color and center crop) or "squash" (resize
    to the output size, ignoring aspect ratio). interpolation: PIL filter for resizing.
    fill_color: 0-255, the padding of "longest" in every channel.
    train_crop_scale: (min, max) area fraction of the random resized crop used in training.
    train_crop_ratio: (min, max) aspect ratio of that crop.
    train_horizontal_flip: flip with probability 0.5 in training.
    """

    image_size: int | tuple[int, int]
    mean: tuple[float, float, float] = OPENAI_CLIP_MEAN
    std: tuple[float, float, float] = OPENAI_CLIP_STD
    resize_mode: str = "shortest"
    interpolation: str = "bicubic"
    fill_color: int = 0
    train_crop_scale: tuple[float, float] = (0.9, 1.0)
    train_crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    train_horizontal_flip: bool = False

    def __post_init__(self) -> None:
        self.image_size = _image_size(self.image_size)
        self.mean = _float_triple("mean", self.mean)
        self.std = _float_triple("std", self.std)
        if any(value <= 0 for value in self.std):
            raise ValueError(f"std must be positive in every channel, got {self.std}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")
        if not isinstance(self.fill_color, int) or isinstance(self.fill_color, bool) or not 0 <= self.fill_color <= 255:
            raise ValueError(f"fill_color must be an int in [0, 255], got {self.fill_color!r}")
        self.train_crop_scale = _float_range("train_crop_scale", self.train_crop_scale, upper=1.0)
        self.train_crop_ratio = _float_range("train_crop_ratio", self.train_crop_ratio, upper=None)
        if not isinstance(self.train_horizontal_flip, bool):
            raise ValueError(f"train_horizontal_flip must be a bool, got {self.train_horizontal_flip!r}")

    @property
    def size_hw(self) -> tuple[int, int]:
        """(H, W) of the output."""
        if isinstance(self.image_size, int):
            return self.image_size, self.image_size
        return self.image_size

    @property
    def train_crop_is_whole_image(self) -> bool:
        """Whether the training crop always takes the whole image: scale (1, 1) and ratio (1, 1) (a
        non-square image's square crop of its whole area cannot fit, and the crop falls back to it)."""
        return self.train_crop_scale == self.train_crop_ratio == (1.0, 1.0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "PreprocessConfig":
        known = {name for name in cls.__dataclass_fields__}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown preprocess keys {unknown}; expected a subset of {sorted(known)}")
        return cls(**values)

    @classmethod
    def from_open_clip(cls, preprocess_cfg: dict, image_size: int | Sequence[int]) -> "PreprocessConfig":
        """open_clip's `preprocess_cfg` (module docstring) -> PreprocessConfig; missing keys take
        open_clip's defaults, `image_size` stands in for a missing `size`. Keys open_clip does not
        read are ignored, as open_clip ignores them. Training augmentation keeps cliplab's defaults,
        which are open_clip's (crop scale 0.9-1, no flip)."""
        if not isinstance(preprocess_cfg, dict):
            raise UserError(f"preprocess_cfg must be a JSON object, got {type(preprocess_cfg).__name__}")
        values = {key: value for key, value in preprocess_cfg.items() if value is not None}
        mode = values.get("mode", "RGB")
        if mode != "RGB":
            raise UserError(f"preprocess_cfg.mode must be 'RGB' (the only mode open_clip has), got {mode!r}")
        interpolation = values.get("interpolation", "bicubic")
        if interpolation == "random":
            interpolation = "bicubic"  # open_clip's eval transform uses bicubic for "random"
        try:
            return cls(image_size=values.get("size", image_size),
                       mean=_per_channel(values.get("mean", OPENAI_CLIP_MEAN)),
                       std=_per_channel(values.get("std", OPENAI_CLIP_STD)),
                       interpolation=interpolation, resize_mode=values.get("resize_mode", "shortest"),
                       fill_color=values.get("fill_color", 0))
        except ValueError as error:
            raise UserError(f"preprocess_cfg: {error}") from None

    def to_open_clip(self) -> dict:
        """The `preprocess_cfg` open_clip reads back to the same eval transform."""
        if self.interpolation == "nearest":
            raise UserError("interpolation 'nearest' has no open_clip spelling (open_clip accepts "
                            "bicubic or bilinear)")
        size = self.image_size if isinstance(self.image_size, int) else list(self.image_size)
        return {"size": size, "mode": "RGB", "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation, "resize_mode": self.resize_mode,
                "fill_color": self.fill_color}

    @classmethod
    def from_hf_image_processor(cls, values: dict) -> "PreprocessConfig":
        """A preprocessor_config.json's fields (module docstring) -> PreprocessConfig."""
        if not isinstance(values, dict):
            raise UserError(f"an image processor config must be a JSON object, got {type(values).__name__}")
        for flag in ("do_resize", "do_rescale", "do_normalize"):
            if values.get(flag, True) is not True:
                raise UserError(f"image processor {flag}={values[flag]!r} is not supported: cliplab "
                                "always resizes, scales to [0, 1] and normalises")
        factor = values.get("rescale_factor", _RESCALE_FACTOR)
        if abs(factor - _RESCALE_FACTOR) > 1e-12:
            raise UserError(f"image processor rescale_factor must be 1/255, got {factor!r}")
        names = {code: name for name, code in PIL_RESAMPLE_CODES.items()}
        resample = values.get("resample", PIL_RESAMPLE_CODES["bicubic"])
        if resample not in names:
            raise UserError(f"image processor resample {resample!r} is not supported; expected one of "
                            f"{sorted(names)} ({', '.join(f'{code} {name}' for code, name in sorted(names.items()))})")
        size = values.get("size", {"shortest_edge": 224})
        if isinstance(size, int):
            size = {"shortest_edge": size}
        crop = values.get("crop_size", size)
        if isinstance(crop, int):
            crop = {"height": crop, "width": crop}
        center_crop = values.get("do_center_crop", "shortest_edge" in size)
        if "shortest_edge" in size:
            edge = size["shortest_edge"]
            if not center_crop or (crop.get("height"), crop.get("width")) != (edge, edge):
                raise UserError(f"image processor size {size} with crop_size {crop} (center crop "
                                f"{center_crop}) is not supported: cliplab resizes the shortest edge to "
                                "the square crop size")
            image_size, resize_mode = edge, "shortest"
        elif "height" in size and "width" in size:
            target = (size["height"], size["width"])
            if center_crop and (crop.get("height"), crop.get("width")) != target:
                raise UserError(f"image processor size {size} with crop_size {crop} is not supported: "
                                "a center crop after resizing to a fixed size must keep that size")
            image_size, resize_mode = target, "squash"
        else:
            raise UserError(f"image processor size {size!r}: expected {{'shortest_edge': S}} or "
                            "{'height': H, 'width': W}")
        try:
            return cls(image_size=image_size, mean=_per_channel(values.get("image_mean", OPENAI_CLIP_MEAN)),
                       std=_per_channel(values.get("image_std", OPENAI_CLIP_STD)),
                       interpolation=names[resample], resize_mode=resize_mode)
        except ValueError as error:
            raise UserError(f"image processor: {error}") from None

    def to_hf_image_processor(self, image_processor_type: str = "CLIPImageProcessor") -> dict:
        """preprocessor_config.json fields giving this resize, crop and normalisation."""
        if image_processor_type not in HF_PROCESSOR_TYPES:
            raise UserError(f"image_processor_type must be one of {HF_PROCESSOR_TYPES}, got "
                            f"{image_processor_type!r}")
        height, width = self.size_hw
        values = {"image_processor_type": image_processor_type, "do_resize": True,
                  "resample": PIL_RESAMPLE_CODES[self.interpolation], "do_rescale": True,
                  "rescale_factor": _RESCALE_FACTOR, "do_normalize": True, "image_mean": list(self.mean),
                  "image_std": list(self.std), "do_convert_rgb": True}
        if self.resize_mode == "squash":
            values["size"] = {"height": height, "width": width}
            if image_processor_type == "CLIPImageProcessor":
                values["do_center_crop"] = False
            return values
        if self.resize_mode == "shortest" and height == width and image_processor_type == "CLIPImageProcessor":
            values.update(size={"shortest_edge": height}, do_center_crop=True,
                          crop_size={"height": height, "width": width})
            return values
        raise UserError(f"resize_mode {self.resize_mode!r} with image_size {self.image_size} has no "
                        f"{image_processor_type} spelling (it has square shortest-edge resize and "
                        "center crop (CLIPImageProcessor), or squash)")


def read_hf_image_processor(path: str | os.PathLike) -> PreprocessConfig:
    """The PreprocessConfig of a Hugging Face preprocessor_config.json file."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: cannot read it as JSON ({error})") from error
    try:
        return PreprocessConfig.from_hf_image_processor(values)
    except UserError as error:
        raise UserError(f"{path}: {error}") from None


def write_hf_image_processor(config: PreprocessConfig, path: str | os.PathLike,
                             image_processor_type: str = "CLIPImageProcessor") -> None:
    """Write `config` as a preprocessor_config.json file at `path`."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(config.to_hf_image_processor(image_processor_type), handle, indent=2)
        handle.write("\n")


def _image_size(value) -> int | tuple[int, int]:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        height, width = value
        value = height if height == width else (height, width)
    sides = (value,) if not isinstance(value, tuple) else value
    if not all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in sides):
        raise ValueError(f"image_size must be a positive int or a pair of them (H, W), got {value!r}")
    return value


def _per_channel(value) -> Sequence[float]:
    """open_clip allows one number for all three channels."""
    return (value,) * 3 if isinstance(value, (int, float)) else value


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
