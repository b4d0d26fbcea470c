"""Decoding one image file or buffer into an RGB PIL image, the same way for every source."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

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
                return image.convert("RGB")
    except Image.UnidentifiedImageError:  # its message would show the buffer's repr
        raise BadSampleError(source, "cannot decode image (not an image format PIL reads)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:
        raise BadSampleError(source, f"cannot decode image ({error})") from None
