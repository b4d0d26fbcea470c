"""The built-in dataset: Fashion-MNIST images with generated captions.

Class names and zero-shot templates belong to the dataset definition (the evaluator uses them);
training captions come from a richer vocabulary of synonyms, descriptions and templates (see
`captions.py`). The split is always explicit: "train" to train on, "test" to evaluate on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cliplab.data.captions import CaptionVocabulary, TemplateCaptioner
from cliplab.data.fashion_mnist_files import (DOWNLOAD_MIRRORS, SPLITS, Fetcher,
                                              locate_fashion_mnist, urllib_fetch)
from cliplab.data.idx import IdxFormatError, read_idx
from cliplab.data.samples import RawSample

FASHION_MNIST_CLASSNAMES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                            "sneaker", "bag", "ankle boot")

# Zero-shot prompts: `template.format(classname)`; "the" reads right before every class name.
FASHION_MNIST_TEMPLATES = (
    "a photo of the {}.",
    "a black and white photo of the {}.",
    "a grayscale photo of the {}.",
    "a low resolution photo of the {}.",
    "a small photo of the {}.",
    "a product photo of the {}.",
    "a centered photo of the {}.",
    "a picture of the {}.",
    "an image of the {}.",
    "the {}, seen from the front.",
)

FASHION_MNIST_CAPTION_VOCABULARY = CaptionVocabulary(
    synonyms=(
        ("t-shirt", "tee", "top", "tee shirt", "short-sleeved top", "casual t-shirt"),
        ("trouser", "pair of trousers", "pair of pants", "pair of slacks", "pair of jeans"),
        ("pullover", "sweater", "jumper", "knitted pullover", "long-sleeved sweater"),
        ("dress", "frock", "gown", "summer dress", "one-piece dress"),
        ("coat", "jacket", "overcoat", "winter coat", "parka"),
        ("sandal", "open-toed sandal", "summer sandal", "strappy sandal", "flip-flop"),
        ("shirt", "button-up shirt", "blouse", "collared shirt", "long-sleeved shirt"),
        ("sneaker", "running shoe", "trainer", "athletic shoe", "low-top sneaker"),
        ("bag", "handbag", "purse", "tote bag", "shoulder bag"),
        ("ankle boot", "boot", "short boot", "heeled boot", "bootie"),
    ),
    descriptions=(
        ("with short sleeves", "made of light cotton", "with a round neck", "worn casually"),
        ("with long legs", "cut straight", "to wear on the legs", "with a waistband"),
        ("with long sleeves", "made of knitted wool", "to keep warm", "pulled over the head"),
        ("in one piece", "with a flowing skirt", "for women", "reaching the knees"),
        ("with long sleeves", "to wear outside", "with buttons down the front", "for cold weather"),
        ("with thin straps", "open at the toes", "with a flat sole", "for warm weather"),
        ("with a collar", "with buttons down the front", "with sleeves", "worn tucked in"),
        ("with laces", "with a rubber sole", "for running", "with a low ankle"),
        ("with a handle", "to carry things in", "with a strap", "made of leather"),
        ("with a heel", "covering the ankle", "made of leather", "with a thick sole"),
    ),
    templates=(
        "a photo of {a_noun}",
        "a black and white picture of {a_noun}",
        "a grayscale photo of {a_noun}",
        "a low resolution image of {a_noun}",
        "a product photo of {a_noun} on a plain background",
        "a small centered picture of {a_noun}",
        "{a_noun}, seen from the front",
        "a photo of {a_noun} {description}",
        "a black and white picture of {a_noun} {description}",
        "{a_noun} {description}",
        "an item of clothing: {a_noun} {description}",
    ),
)

IMAGE_SIZE = 28


def fashion_mnist_captioner(seed: int) -> TemplateCaptioner:
    return TemplateCaptioner(FASHION_MNIST_CAPTION_VOCABULARY, seed=seed)


def fashion_mnist_caption_corpus() -> list[str]:
    """Every training caption (template x synonym x description) plus every zero-shot prompt."""
    prompts = [template.format(name) for name in FASHION_MNIST_CLASSNAMES
               for template in FASHION_MNIST_TEMPLATES]
    return fashion_mnist_captioner(seed=0).corpus() + prompts


class FashionMnistDataset:
    """Fashion-MNIST `split` as a map-style dataset; `read(index, epoch=e)` gives a RawSample.

    images: uint8 [N, 28, 28]; labels: int64 [N] in [0, 10). Each sample is handed on as a 28x28
    RGB PIL image (the grey value in all three channels) with a caption drawn for (index, epoch).
    """

    def __init__(self, *, split: str, data_dir: str | Path | None = None, caption_seed: int = 0,
                 cache_dir: str | Path | None = None, download: bool = True,
                 fetch: Fetcher = urllib_fetch, mirrors: tuple[str, ...] = DOWNLOAD_MIRRORS):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.split = split
        self.images_path, self.labels_path = locate_fashion_mnist(
            split, data_dir=data_dir, cache_dir=None if cache_dir is None else Path(cache_dir),
            download=download, fetch=fetch, mirrors=mirrors)
        self.images = read_idx(self.images_path)
        self.labels = read_idx(self.labels_path).astype(np.int64)
        self._validate()
        self.captioner = fashion_mnist_captioner(caption_seed)

    def _validate(self) -> None:
        if self.images.ndim != 3 or self.images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise IdxFormatError(f"{self.images_path}: expected images of shape [N, 28, 28], got "
                                 f"{list(self.images.shape)}")
        if self.images.dtype != np.uint8:
            raise IdxFormatError(f"{self.images_path}: expected uint8 pixels, got "
                                 f"{self.images.dtype}")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise IdxFormatError(f"{self.labels_path}: expected {len(self.images)} labels (one per "
                                 f"image in {self.images_path.name}), got shape "
                                 f"{list(self.labels.shape)}")
        num_classes = len(FASHION_MNIST_CLASSNAMES)
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= num_classes):
            raise IdxFormatError(f"{self.labels_path}: labels must lie in [0, {num_classes}), got "
                                 f"[{self.labels.min()}, {self.labels.max()}]")

    def __len__(self) -> int:
        return len(self.images)

    def read(self, index: int, *, epoch: int) -> RawSample:
        label = int(self.labels[index])
        pixels = self.images[index]
        image = Image.fromarray(np.repeat(pixels[:, :, None], 3, axis=2), mode="RGB")
        caption = self.captioner.caption(label, sample_index=index, epoch=epoch)
        return RawSample(image=image, caption=caption, label=label,
                         source=f"fashion-mnist/{self.split}/{index}")
