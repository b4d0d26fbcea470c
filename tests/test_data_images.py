"""Decoding images: 16-bit grayscale scaled to 8 bits, not clipped."""

import io

import numpy as np
from PIL import Image

from cliplab.data.images import decode_rgb_image, to_rgb


def _png_16bit(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.uint16)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_16_bit_grayscale_png_keeps_its_high_byte():
    # Before: PIL's convert("RGB") clipped at 255, and 99.7% of a 16-bit PNG's pixels came out white.
    values = np.array([[0, 255, 256, 511], [32767, 32768, 65280, 65535]], dtype=np.uint16)
    data = _png_16bit(values)
    assert Image.open(io.BytesIO(data)).mode == "I;16"  # what PIL gives for it
    decoded = np.asarray(decode_rgb_image(io.BytesIO(data), "x.png"))
    expected = np.array([[0, 0, 1, 1], [127, 128, 255, 255]], dtype=np.uint8)  # value >> 8
    assert decoded.dtype == np.uint8 and decoded.shape == (2, 4, 3)
    assert np.array_equal(decoded, np.repeat(expected[..., None], 3, axis=2))


def test_a_32_bit_integer_image_of_16_bit_values_is_scaled_the_same():
    values = np.arange(0, 65536, 4096, dtype=np.int32).reshape(4, 4)
    image = Image.fromarray(values)
    assert image.mode == "I"
    assert np.array_equal(np.asarray(to_rgb(image))[..., 1], (values >> 8).astype(np.uint8))


def test_8_bit_images_are_converted_as_before():
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 6, 3), dtype=np.uint8)
    for image in (Image.fromarray(pixels), Image.fromarray(pixels[..., 0]), Image.fromarray(pixels).convert("P")):
        assert np.array_equal(np.asarray(to_rgb(image)), np.asarray(image.convert("RGB")))
