"""Decoding one image file or buffer into an RGB PIL image, the same way for every source.

16-bit grayscale images (PNG, TIFF) open in PIL's modes `I;16*` or `I`, whose conversion to RGB
clips every value above 255 (a 16-bit PNG came out 99.7% white); they are scaled to 8 bits by
keeping the high byte (value >> 8), as PIL itself does for 16-bit colour PNGs.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from cliplab.data.samples import BadSampleError


def decode_rgb_image(file: str | Path | BinaryIO, source: str) -> Image.Image:
    """The fully decoded image in `file` (a path or a binary buffer), in RGB.

    Decoding happens here, not lazily in the transform, so a truncated or undecodable image (or a
    decompression bomb) raises BadSampleError naming `source` at read time.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                image.load()
                return to_rgb(image)
    except Image.UnidentifiedImageError:  # its message would show the buffer's repr
        raise BadSampleError(source, "cannot decode image (not an image format PIL reads)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:
        raise BadSampleError(source, f"cannot decode image ({error})") from None


def scale_16_bit_gray(image: Image.Image) -> Image.Image:
    """A 16-bit grayscale `image` as 8-bit grayscale ("L", the high byte of each value); any other
    image as it is (see the module docstring)."""
    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image).astype(np.int64)  # I;16B is big-endian: asarray gives native values
        return Image.fromarray((np.clip(values, 0, 65535) >> 8).astype(np.uint8))
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """`image` in RGB, 16-bit grayscale scaled to 8 bits first."""
    return scale_16_bit_gray(image).convert("RGB")
