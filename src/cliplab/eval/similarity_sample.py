"""Image-text cosine similarities of a small labelled sample: one image per class against one prompt
per class, the picture of what a trained model has learnt (a bright diagonal when it works)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from cliplab.data.samples import MapDataset
from cliplab.eval.embeddings import encode_image_batches, encode_texts


@dataclass(frozen=True)
class SimilaritySample:
    """images: N RGB arrays uint8 [H, W, 3]; texts: N prompts (text i describes image i's class);
    similarity: float64 [N_text, N_image] cosine similarities."""

    images: tuple[np.ndarray, ...]
    texts: tuple[str, ...]
    similarity: np.ndarray


def first_index_per_class(labels: Sequence[int], num_classes: int) -> list[int]:
    """Index of the first sample of each class 0..num_classes-1 present in `labels`, class order."""
    first: dict[int, int] = {}
    for index, label in enumerate(labels):
        if 0 <= label < num_classes and label not in first:
            first[label] = index
            if len(first) == num_classes:
                break
    return [first[label] for label in sorted(first)]


def class_similarity_sample(
    model: torch.nn.Module,
    preprocess: Callable,
    tokenizer: Callable[[list[str]], torch.Tensor],
    dataset: MapDataset,
    labels: Sequence[int],
    classnames: Sequence[str],
    template: str,
    max_classes: int = 10,
) -> SimilaritySample:
    """One image per class (the first in `dataset`) against `template.format(classname)` prompts.

    labels: the dataset's labels (to find the images without decoding them all); max_classes:
    how many classes (the first ones) to show.
    """
    classes = list(classnames)[:max_classes]
    indices = first_index_per_class(labels, len(classes))
    if not indices:
        raise ValueError("the dataset has no image of any of the classes to show")
    samples = [dataset.read(index, epoch=0) for index in indices]
    texts = tuple(template.format(classes[sample.label]) for sample in samples)
    image_features = encode_image_batches(model, [torch.stack([preprocess(sample.image) for sample in samples])])
    text_features = encode_texts(model, tokenizer, texts)
    similarity = (text_features @ image_features.T).double().numpy()
    return SimilaritySample(images=tuple(np.asarray(sample.image) for sample in samples), texts=texts,
                            similarity=similarity)
