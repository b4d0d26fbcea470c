"""Tiny on-disk data for the data tests: idx files, PNG images, manifests."""

from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> Path:
    """Write `array` (uint8) in IDX format, gzip-compressed when `compress`."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    opener = gzip.open if compress else open
    with opener(path, "wb") as handle:
        handle.write(payload)
    return path


def tiny_fashion_arrays(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    labels = (np.arange(count) % 10).astype(np.uint8)
    return images, labels


def make_fashion_dir(directory: Path, *, train_count: int = 20, test_count: int = 10) -> Path:
    """A directory holding both Fashion-MNIST splits as tiny random idx.gz files."""
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, count, seed in (("train", train_count, 0), ("t10k", test_count, 1)):
        images, labels = tiny_fashion_arrays(count, seed)
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return directory


def write_png(path: Path, value: int, size: int = 8) -> Path:
    """An RGB PNG whose pixels all equal (value, value // 2, 255 - value)."""
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = value, value // 2, 255 - value
    Image.fromarray(pixels).save(path)
    return path


def make_manifest(directory: Path, count: int, *, bad: dict[int, str] | None = None,
                  separator: str = "\t") -> Path:
    """images/i.png with value i, manifest.tsv with `filepath`, `title` = "caption i", `label`.

    `bad` maps index -> "missing" | "truncated" | "garbage" | "empty-caption".
    """
    bad = bad or {}
    (directory / "images").mkdir(parents=True, exist_ok=True)
    lines = [separator.join(["filepath", "title", "label"])]
    for index in range(count):
        path = write_png(directory / "images" / f"{index}.png", index % 256)
        caption = f"caption {index}"
        kind = bad.get(index)
        if kind == "missing":
            path.unlink()
        elif kind == "truncated":
            path.write_bytes(path.read_bytes()[:40])
        elif kind == "garbage":
            path.write_bytes(b"this is not an image")
        elif kind == "empty-caption":
            caption = " "
        lines.append(separator.join([f"images/{index}.png", caption, str(index % 10)]))
    manifest = directory / "manifest.tsv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def first_pixel_transform(image: Image.Image) -> torch.Tensor:
    """float [3, H, W] in [0, 1]: the image as is, so tests can read back pixel values."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1) / 255.0


def random_augment_transform(image: Image.Image) -> torch.Tensor:
    """Adds torch-RNG noise: exposes whether augmentation randomness is reproducible."""
    return first_pixel_transform(image) + torch.rand(1)


def length_tokenize(captions: list[str]) -> torch.Tensor:
    """long [N, 2]: (caption length, hash of the caption's digits) - enough to check alignment."""
    return torch.tensor([[len(text), sum(ord(c) for c in text)] for text in captions],
                        dtype=torch.long)


def png_bytes(value: int, size: int = 8) -> bytes:
    """The encoded PNG of `write_png`'s image for `value`."""
    pixels = np.zeros((size, size, 3), dtype=np.uint8)
    pixels[..., 0], pixels[..., 1], pixels[..., 2] = value, value // 2, 255 - value
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def make_parquet(path: Path, count: int, *, first: int = 0, row_group_size: int = 4,
                 image_key: str = "jpg", caption_key: str = "txt", label_key: str | None = "label",
                 struct_images: bool = False, bad: dict[int, str] | None = None,
                 extra_columns: dict[str, list] | None = None) -> Path:
    """A parquet file of `count` rows; row i holds `png_bytes(first + i)`, caption
    "caption {first + i}" and label (first + i) % 10, in row groups of `row_group_size`.

    `bad` maps a row to "garbage" (undecodable bytes), "empty-caption", "null-caption" or
    "null-image" (img2dataset's row for a failed download). `struct_images` stores images as the
    hub's {"bytes", "path"} structs.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    bad = bad or {}
    images, captions = [], []
    for row in range(count):
        value, kind = first + row, bad.get(row)
        image = None if kind == "null-image" else (b"garbage" if kind == "garbage" else
                                                   png_bytes(value % 256))
        caption = {"empty-caption": " ", "null-caption": None}.get(kind, f"caption {value}")
        images.append({"bytes": image, "path": f"{value}.png"} if struct_images and image is not None
                      else image)
        captions.append(caption)
    image_type = (pa.struct([("bytes", pa.binary()), ("path", pa.string())]) if struct_images
                  else pa.binary())
    columns = {image_key: pa.array(images, type=image_type), caption_key: pa.array(captions, pa.string())}
    if label_key is not None:
        columns[label_key] = pa.array([(first + row) % 10 for row in range(count)], pa.int64())
    for name, values in (extra_columns or {}).items():
        columns[name] = pa.array(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path, row_group_size=row_group_size)
    return path


def damage_row_group(path: Path, row_group: int) -> Path:
    """Overwrite the page headers at the start of each column chunk of `row_group` in the parquet
    file `path` (what a flipped sector does): reading that group then fails with pyarrow's
    "Couldn't deserialize thrift"; the footer and the other groups stay readable."""
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata.row_group(row_group)
    data = bytearray(path.read_bytes())
    for column in range(metadata.num_columns):
        chunk = metadata.column(column)
        start = chunk.dictionary_page_offset or chunk.data_page_offset
        data[start:start + 12] = b"\xff" * 12
    path.write_bytes(bytes(data))
    return path
