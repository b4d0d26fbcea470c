"""What each evaluation figure measures and what guessing would score: the words printed beside it.

    figure                          measured over          a hit is                          chance
    zero-shot top-k accuracy        N images, C classes    the true class among the k        k / C
                                                           closest class prompts
    retrieval R@k (image-to-text)   N image-caption pairs  the image's own caption among     k / N
                                                           the k closest of all N captions
    in-batch top-1 accuracy         a batch of B pairs     the own caption closest of the B  1 / B

Retrieval and in-batch accuracy count only a pair's own caption (image) as a hit: where captions fit
many images (Fashion-MNIST's, written from ten classes' templates, each fits about a tenth of the
images) they stay low while zero-shot accuracy is high. The training console, `cliplab eval` and
`cliplab report` print these sentences.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LOW_WHEN_CAPTIONS_ARE_SHARED = "so captions that fit many images keep it low"


def chance_of_top_k(k: int, candidates: int) -> float:
    """The hit rate of guessing k of `candidates` uniformly: min(k, candidates) / candidates."""
    return min(k, candidates) / candidates


def percent(value: float) -> str:
    """90.64%, 0.39%, 0.01% (two decimals; a smaller non-zero value with its first digit)."""
    shown = f"{100 * value:.2f}"
    if value > 0 and float(shown) == 0:
        shown = f"{100 * value:.1g}"
    return f"{shown}%"


def zero_shot_sentence(metrics: Mapping[str, Any]) -> str:
    """'zero-shot top-1 90.64%, top-5 99.88%[, mean per-class recall 90.60%] of 10000 images (chance
    10.00%, 50.00%[, 10.00%]: the true class among the 1 or 5 closest of 10 class prompts)' from an eval
    record's zero_shot_* keys (counts and recall when present)."""
    classes = len(metrics.get("classnames") or ())
    top_k = min(5, classes) if classes else 5
    recall = metrics.get("zero_shot_mean_per_class_recall")
    sentence = f"zero-shot top-1 {percent(metrics['zero_shot_top1'])}, top-{top_k} {percent(metrics['zero_shot_top5'])}"
    if recall is not None:
        sentence += f", mean per-class recall {percent(recall)}"
    if metrics.get("zero_shot_count"):
        sentence += f" of {metrics['zero_shot_count']} images"
    if classes:
        chances = [chance_of_top_k(1, classes), chance_of_top_k(top_k, classes)]
        if recall is not None:
            chances.append(chance_of_top_k(1, classes))  # a per-class mean of top-1 hits
        sentence += (f" (chance {', '.join(percent(chance) for chance in chances)}: "
                     f"the true class among the 1 or {top_k} closest of {classes} class prompts)")
    return sentence


def retrieval_sentence(metrics: Mapping[str, Any]) -> str:
    """'retrieval R@1 image-to-text 1.20%, text-to-image 1.10% of 10000 pairs (chance 0.01%: a hit is the
    pair's own caption (image) ranked first of all 10000, ...)' from an eval record's retrieval keys."""
    sentence = (f"retrieval R@1 image-to-text {percent(metrics['image_to_text_R@1'])}, "
                f"text-to-image {percent(metrics['text_to_image_R@1'])}")
    pairs, captions = metrics.get("retrieval_count"), metrics.get("retrieval_caption_count")
    if pairs and captions:
        return sentence + (f" of {pairs} images with {captions} captions (a hit is an image with any of its captions "
                           "ranked first, or a caption with its image ranked first)")
    if pairs:
        sentence += (f" of {pairs} pairs (chance {percent(chance_of_top_k(1, pairs))}: a hit is the pair's own "
                     f"caption (image) ranked first of all {pairs}, {LOW_WHEN_CAPTIONS_ARE_SHARED})")
    return sentence


def in_batch_sentence(global_batch_size: int) -> str:
    """What the training records' i2t/t2i accuracy measure, with their chance level."""
    return (f"In-batch accuracy: the share of a step's images (captions) whose own caption (image) scores "
            f"highest of the {global_batch_size} in the global batch (chance "
            f"{percent(chance_of_top_k(1, global_batch_size))}), {LOW_WHEN_CAPTIONS_ARE_SHARED}.")
