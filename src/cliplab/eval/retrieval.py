"""Image-text retrieval metrics: of paired embeddings with open_clip's `get_clip_metrics`
definitions (`retrieval_metrics`, what training and `cliplab eval` report), and of images with
several captions each with CLIP_benchmark 1.6.2's (`caption_retrieval_recall`, what
`cliplab benchmark` reports, and training and `cliplab eval` on data with several captions per
image, `caption_list_metrics`).

Pairs (open_clip):

Row i of the image features and row i of the text features are a pair. For each query the rank is
the 0-based position of its partner among all candidates sorted by descending logit, so a perfect
retrieval has rank 0 everywhere. Reported per direction ("image_to_text", "text_to_image"):
  mean_rank   = mean(rank) + 1
  median_rank = floor(median(rank)) + 1
  R@k         = fraction of queries with rank < k, for k in RECALL_AT

Several captions per image (CLIP_benchmark), scores = text_features @ image_features.T [M, N]:
  image_retrieval_recall@k = fraction of the M captions whose image is among the k images of
                             highest score (torch.topk's choice among equal scores)
  text_retrieval_recall@k  = fraction of the N images with at least one of their captions among the
                             k captions of highest score (an image without captions counts as missed)
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch

from cliplab.eval.embeddings import ProgressCounter, encode_images_and_captions
from cliplab.eval.scores import model_logit_scale

RECALL_AT = (1, 5, 10)


def evaluate_retrieval(model: torch.nn.Module, batches: Iterable[Any], *, device: torch.device | str | None = None,
                       max_samples: int | None = None,
                       progress: ProgressCounter | None = None) -> tuple[dict[str, float], int]:
    """(retrieval metrics, number of images) of `model` on captioned batches (`images` with
    `tokens`, or every caption of each image: `caption_lists` / `caption_tokens`); progress:
    advanced by each batch's image count.

    The one retrieval path of cliplab, used by `cliplab eval` and by the evaluation during
    training: unit-norm embeddings from `encode_images_and_captions`. With one caption per image,
    the pair metrics (`retrieval_metrics`, logits scaled by `model_logit_scale`: exp of the parameter
    clamped to the loss's maximum, so the logits are the ones the loss saw); with several,
    `caption_list_metrics` (CLIP_benchmark's rule: an image counts as found when any of its captions is).
    """
    image_features, text_features, image_of_text = encode_images_and_captions(
        model, batches, device=device, max_samples=max_samples, progress=progress)
    if text_features.shape[0] == image_features.shape[0]:
        metrics = retrieval_metrics(image_features, text_features, model_logit_scale(model))
    else:
        metrics = caption_list_metrics(image_features, text_features, image_of_text)
    return metrics, int(image_features.shape[0])


def caption_list_metrics(image_features: torch.Tensor, text_features: torch.Tensor,
                         image_of_text: torch.Tensor) -> dict[str, float]:
    """The retrieval keys of images with several captions each (`caption_retrieval_recall`, CLIP_benchmark's
    rule), named as the pair metrics: image_to_text_R@k is an image with any of its captions among the
    k closest of all M captions (CLIP_benchmark's text_retrieval_recall@k), text_to_image_R@k a caption
    with its image among the k closest images (image_retrieval_recall@k); for each k of RECALL_AT up
    to min(N, M). No mean or median rank (CLIP_benchmark has none); retrieval_caption_count: M.

    image_features [N, E], text_features [M, E] unit-norm; image_of_text Long[M]."""
    recall_at = [k for k in RECALL_AT if k <= min(image_features.shape[0], text_features.shape[0])]
    recall = caption_retrieval_recall(image_features, text_features, image_of_text, recall_at)
    metrics: dict[str, float] = {}
    for k in recall_at:
        metrics[f"image_to_text_R@{k}"] = recall[f"text_retrieval_recall@{k}"]
        metrics[f"text_to_image_R@{k}"] = recall[f"image_retrieval_recall@{k}"]
    metrics["retrieval_caption_count"] = int(text_features.shape[0])
    return metrics


def retrieval_metrics(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor | float = 1.0,
) -> dict[str, float]:
    """Retrieval metrics of N image-text pairs in both directions (keys: see the module docstring).

    image_features: [N, D] float; text_features: [N, D] float (normalised by the caller, as the
    model's `encode_*(..., normalize=True)` returns them); logit_scale: positive scalar, float or
    0-d tensor (it scales every logit alike, so it changes no rank; kept for open_clip's signature).
    Ties between logits are broken by candidate index, lowest first.
    """
    _check_pairs(image_features, text_features)
    scale = float(logit_scale.detach()) if isinstance(logit_scale, torch.Tensor) else float(logit_scale)
    if not scale > 0:
        raise ValueError(f"logit_scale must be positive, got {scale}")
    logits_per_image = scale * image_features.detach().float().cpu() @ text_features.detach().float().cpu().T
    metrics: dict[str, float] = {}
    for direction, logits in (("image_to_text", logits_per_image), ("text_to_image", logits_per_image.T)):
        ranks = ground_truth_ranks(logits)
        metrics[f"{direction}_mean_rank"] = float(ranks.double().mean()) + 1.0
        metrics[f"{direction}_median_rank"] = float(_median_floor(ranks)) + 1.0
        for k in RECALL_AT:
            metrics[f"{direction}_R@{k}"] = float((ranks < k).double().mean())
    return metrics


def ground_truth_ranks(logits: torch.Tensor) -> torch.Tensor:
    """0-based rank of the diagonal entry in each row of `logits` sorted descending.

    logits: [N, N] float, row = query, column = candidate, partner of query i is candidate i.
    Returns [N] int64.
    """
    order = torch.argsort(logits, dim=1, descending=True, stable=True)  # [N, N] candidate ids
    partners = torch.arange(logits.shape[0]).view(-1, 1)
    return (order == partners).int().argmax(dim=1).long()


def _median_floor(ranks: torch.Tensor) -> int:
    # numpy's median of an even count averages the two middle values; floor of that average is
    # what open_clip reports, while torch.median would return the lower middle value directly.
    sorted_ranks = torch.sort(ranks).values
    count = sorted_ranks.numel()
    if count % 2 == 1:
        return int(sorted_ranks[count // 2])
    return int((sorted_ranks[count // 2 - 1] + sorted_ranks[count // 2]) // 2)


def _check_pairs(image_features: torch.Tensor, text_features: torch.Tensor) -> None:
    for name, features in (("image_features", image_features), ("text_features", text_features)):
        if not isinstance(features, torch.Tensor) or features.dim() != 2 or not features.is_floating_point():
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"{name} must be a 2-D float tensor [N, D], got {shape}")
    if image_features.shape != text_features.shape:
        raise ValueError(
            "image_features and text_features must be paired row by row with the same shape [N, D], got "
            f"{tuple(image_features.shape)} and {tuple(text_features.shape)}"
        )
    if image_features.shape[0] == 0:
        raise ValueError("retrieval_metrics needs at least one image-text pair, got 0")


def caption_retrieval_recall(image_features: torch.Tensor, text_features: torch.Tensor,
                             text_image_index: torch.Tensor, recall_k: Sequence[int]) -> dict[str, float]:
    """CLIP_benchmark's retrieval metrics (module docstring) for each k of `recall_k`.

    image_features: [N, E] and text_features: [M, E], unit-norm rows; text_image_index: Long[M], the
    image of each caption, in [0, N); every k must be <= min(N, M).
    """
    _check_pairs(image_features, image_features)
    _check_pairs(text_features, text_features)
    count_images, count_texts = image_features.shape[0], text_features.shape[0]
    if text_image_index.shape != (count_texts,):
        raise ValueError(f"text_image_index must hold one image per caption, [{count_texts}], got "
                         f"{tuple(text_image_index.shape)}")
    for k in recall_k:
        if not 1 <= k <= min(count_images, count_texts):
            raise ValueError(f"recall@{k} needs 1 <= k <= min({count_images} images, {count_texts} captions)")
    image_of_text = text_image_index.long().cpu()
    scores = text_features.float().cpu() @ image_features.float().cpu().T  # [M, N], as CLIP_benchmark forms it
    metrics: dict[str, float] = {}
    for k in recall_k:
        image_hits = torch.cat([(rows.topk(k, dim=1).indices == image_of_text[start:start + len(rows)].view(-1, 1))
                                .any(dim=1) for start, rows in _row_chunks(scores)])
        text_hits = torch.cat([(image_of_text[rows.topk(k, dim=1).indices]
                                == torch.arange(start, start + len(rows)).view(-1, 1)).any(dim=1)
                               for start, rows in _row_chunks(scores.T)])
        metrics[f"image_retrieval_recall@{k}"] = float(image_hits.float().mean())
        metrics[f"text_retrieval_recall@{k}"] = float(text_hits.float().mean())
    return metrics


def _row_chunks(matrix: torch.Tensor, rows: int = 1024):
    """(first row, a view of up to `rows` rows) over `matrix`: each query's top k is its row's, so
    chunks give what the whole matrix gives, without a copy of it (COCO: 25,000 x 5,000 scores)."""
    for start in range(0, matrix.shape[0], rows):
        yield start, matrix[start:start + rows]
