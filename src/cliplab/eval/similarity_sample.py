"""Image-text cosine similarities of a few of a run's own image-caption pairs: the picture of what the
model has learnt (a bright diagonal when it works).

The pairs come from evaluation batches (the data loaders' batch dicts: model-ready `images`,
`tokens`, `captions`, `labels`), in data order: the first sample of each label where the data has
labels (one image per class), else the first sample of each distinct caption, up to `max_pairs`.
Text i is image i's own caption. The images are shown as the model sees them: resized and cropped,
with the normalisation undone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cliplab.eval.embeddings import encode_image_batches
from cliplab.eval.model_mode import inference_mode, model_device


@dataclass(frozen=True)
class SimilaritySample:
    """images: N RGB arrays uint8 [H, W, 3]; texts: their N captions (text i belongs to image i);
    labels: their N labels (-1 where the data has none); similarity: float64 [N_text, N_image]
    cosine similarities."""

    images: tuple[np.ndarray, ...]
    texts: tuple[str, ...]
    labels: tuple[int, ...]
    similarity: np.ndarray


@dataclass(frozen=True)
class PickedPairs:
    """images: Float[N, 3, S, S] model inputs; tokens: Long[N, T]; captions and labels: N each."""

    images: torch.Tensor
    tokens: torch.Tensor
    captions: tuple[str, ...]
    labels: tuple[int, ...]


def pick_pairs(batches: Iterable[dict], *, max_pairs: int = 10, max_scanned: int = 2000) -> PickedPairs:
    """The first samples of distinct labels (distinct captions for unlabelled samples, label -1)
    among the first `max_scanned` samples of `batches`, at most `max_pairs`."""
    seen: set = set()
    images, tokens, captions, labels = [], [], [], []
    scanned = 0
    for batch in batches:
        for index, (caption, label) in enumerate(zip(batch["captions"], batch["labels"].tolist())):
            key = ("label", label) if label >= 0 else ("caption", caption)
            if key not in seen:
                seen.add(key)
                images.append(batch["images"][index])
                tokens.append(batch["tokens"][index])
                captions.append(caption)
                labels.append(label)
            scanned += 1
            if len(captions) == max_pairs or scanned == max_scanned:
                break
        if len(captions) == max_pairs or scanned == max_scanned:
            break
    if not captions:
        raise ValueError("the data holds no image-caption pair to show")
    return PickedPairs(images=torch.stack(images), tokens=torch.stack(tokens), captions=tuple(captions),
                       labels=tuple(labels))


def displayable(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> tuple[np.ndarray, ...]:
    """Normalised model inputs Float[N, 3, S, S] back to N RGB arrays uint8 [S, S, 3]."""
    mean_tensor = torch.tensor(mean, dtype=images.dtype).view(1, 3, 1, 1)
    std_tensor = torch.tensor(std, dtype=images.dtype).view(1, 3, 1, 1)
    pixels = (images.cpu() * std_tensor + mean_tensor).clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return tuple(image.permute(1, 2, 0).numpy() for image in pixels)


def similarity_sample(model: torch.nn.Module, batches: Iterable[dict], *, mean: Sequence[float],
                      std: Sequence[float], max_pairs: int = 10, max_scanned: int = 2000) -> SimilaritySample:
    """`pick_pairs` of `batches`, embedded by `model`; mean / std: the normalisation the batches'
    images went through (to show them)."""
    pairs = pick_pairs(batches, max_pairs=max_pairs, max_scanned=max_scanned)
    image_features = encode_image_batches(model, [pairs.images])
    with inference_mode(model):
        tokens = pairs.tokens.to(model_device(model))
        text_features = F.normalize(model.encode_text(tokens, normalize=False).float(), dim=-1).cpu()
    similarity = (text_features @ image_features.T).double().numpy()
    return SimilaritySample(images=displayable(pairs.images, mean, std), texts=pairs.captions, labels=pairs.labels,
                            similarity=similarity)
