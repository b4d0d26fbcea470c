"""Normalised embeddings of images, texts and image-text pairs, computed in batches.

Every function runs without gradients with the model in eval mode (previous mode restored) and
returns float32 CPU tensors whose rows have unit L2 norm, ready for cosine similarities.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import torch
import torch.nn.functional as F

from cliplab.eval.model_mode import inference_mode, model_device, model_dtype


class ProgressCounter(Protocol):
    """What the loops here report their progress to (`cliplab.console.Progress`, a tqdm bar)."""

    def update(self, count: int) -> None: ...


def counted_batches(batches: Iterable[tuple[torch.Tensor, ...]], max_samples: int | None,
                    progress: ProgressCounter | None) -> Iterator[tuple[torch.Tensor, ...]]:
    """The non-empty ones of `batches` (tensors sharing their first dimension, the samples, which
    the last tensor's counts), the last one cut so that at most `max_samples` pass (None: all);
    `progress` advanced by each batch's samples once the consumer is done with it."""
    count = 0
    for tensors in batches:
        if tensors[-1].shape[0] == 0:  # an evaluation loader's last batch may be empty
            continue
        if max_samples is not None:
            tensors = tuple(tensor[: max_samples - count] for tensor in tensors)
        yield tensors
        count += tensors[-1].shape[0]
        if progress is not None:
            progress.update(tensors[-1].shape[0])
        if max_samples is not None and count >= max_samples:
            return


def encode_image_batches(
    model: torch.nn.Module,
    image_batches: Iterable[torch.Tensor],
    device: torch.device | str | None = None,
    progress: ProgressCounter | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> torch.Tensor:
    """[N, E] float32 image embeddings of the concatenated batches (each Float[B, 3, H, W]).

    progress: advanced by each batch's size (None: silent); autocast: the context each forward
    runs in (e.g. bf16 autocast, `split_features.autocast_for`).
    """
    device = torch.device(device) if device is not None else model_device(model)
    dtype = model_dtype(model)
    embeddings = []
    with inference_mode(model):
        for images in image_batches:
            with autocast():
                features = model.encode_image(images.to(device=device, dtype=dtype), normalize=False)
            embeddings.append(F.normalize(features.float(), dim=-1).cpu())
            if progress is not None:
                progress.update(images.shape[0])
    if not embeddings:
        raise ValueError("encode_image_batches got no image batches")
    return torch.cat(embeddings)


def encode_texts(
    model: torch.nn.Module,
    tokenizer: Callable[[list[str]], torch.Tensor],
    texts: Sequence[str],
    batch_size: int = 256,
    device: torch.device | str | None = None,
    progress: ProgressCounter | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> torch.Tensor:
    """[N, E] float32 embeddings of N texts, encoded `batch_size` at a time (each forward inside
    `autocast`).

    The texts are tokenized at once and encoded in order of their token count, each batch cut to
    the columns its longest text needs where the text tower says nothing reads the rest
    (`TextTransformer.pooled_prefix_length`: causal CLIP towers), so short prompts do not pay for
    the whole context; the rows come back in the order of `texts`.
    """
    if isinstance(texts, str) or len(texts) == 0:
        raise ValueError(f"texts must be a non-empty sequence of strings, got {texts!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device) if device is not None else model_device(model)
    tokens = tokenizer(list(texts))  # [N, T]
    prefix_length = getattr(getattr(model, "text_tower", None), "pooled_prefix_length", None)
    order = torch.arange(len(texts))
    if prefix_length is not None:
        pad_id = model.text_tower.config.pad_id
        order = torch.argsort((tokens != pad_id).sum(dim=1), stable=True)
    embeddings = torch.empty(0)
    with inference_mode(model):
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            batch = tokens[rows]
            if prefix_length is not None:
                batch = batch[:, :prefix_length(batch)]
            with autocast():
                features = F.normalize(model.encode_text(batch.to(device), normalize=False).float(), dim=-1).cpu()
            if embeddings.numel() == 0:
                embeddings = torch.empty(len(texts), features.shape[1])
            embeddings[rows] = features
            if progress is not None:
                progress.update(len(rows))
    return embeddings


def encode_images_and_captions(
    model: torch.nn.Module,
    batches: Iterable[Any],
    device: torch.device | str | None = None,
    max_samples: int | None = None,
    progress: ProgressCounter | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(image_features [N, E], text_features [M, E], image_of_text Long[M]) of captioned batches:
    every caption of each image (M >= N; M == N and image_of_text = arange(N) for one caption each).

    batches: mappings with `images` Float[B, 3, H, W] and either `caption_tokens` Long[M_b, T] with
    `caption_lists` (every caption of each sample, an evaluation loader's batches) or `tokens`
    Long[B, T] (one caption each); empty batches are skipped; max_samples: stop after this many
    images (None: all); progress: advanced by each batch's image count.
    """
    device = torch.device(device) if device is not None else model_device(model)
    dtype = model_dtype(model)
    image_embeddings, text_embeddings, owners = [], [], []
    count = 0
    with inference_mode(model):
        for tokens_by_image, counts, images in counted_batches(map(_captioned, batches), max_samples, progress):
            tokens = tokens_by_image[torch.arange(tokens_by_image.shape[1]) < counts[:, None]]  # image after image
            image_features = model.encode_image(images.to(device=device, dtype=dtype), normalize=False)
            text_features = model.encode_text(tokens.to(device), normalize=False)
            image_embeddings.append(F.normalize(image_features.float(), dim=-1).cpu())
            text_embeddings.append(F.normalize(text_features.float(), dim=-1).cpu())
            owners.append(torch.arange(count, count + images.shape[0]).repeat_interleave(counts))
            count += images.shape[0]
    if count == 0:
        raise ValueError("encode_images_and_captions got no captioned images: the batches were empty")
    return torch.cat(image_embeddings), torch.cat(text_embeddings), torch.cat(owners)


def _captioned(batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens by image Long[B, C, T], zero-padded to the most captions C of an image, caption counts
    Long[B], images Float[B, 3, H, W]) of a batch with every caption of each image (`caption_tokens`
    with `caption_lists`) or one (`tokens`): each tensor indexed by image, as `counted_batches` cuts."""
    if "images" not in batch or "tokens" not in batch:
        raise ValueError(f"a captioned batch needs keys 'images' and 'tokens', got {sorted(batch)}")
    images = batch["images"]
    if "caption_tokens" not in batch or images.shape[0] == 0:
        return batch["tokens"][:, None], torch.ones(batch["tokens"].shape[0], dtype=torch.long), images
    counts = torch.tensor([len(captions) for captions in batch["caption_lists"][:images.shape[0]]], dtype=torch.long)
    rows = torch.split(batch["caption_tokens"][:int(counts.sum())], counts.tolist())
    return torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True), counts, images
