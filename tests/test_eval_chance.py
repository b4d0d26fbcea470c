"""eval/chance: what each figure measures and its chance level, in the words the console, `cliplab
eval` and `cliplab report` print."""

import pytest

from cliplab.eval.chance import chance_of_top_k, in_batch_sentence, percent, retrieval_sentence, zero_shot_sentence
from cliplab.eval.report import RunMetrics, figure_notes


@pytest.mark.parametrize("k, candidates, chance", [(1, 10, 0.1), (5, 10, 0.5), (5, 3, 1.0), (1, 10000, 1e-4)])
def test_chance_is_k_of_the_candidates(k, candidates, chance):
    assert chance_of_top_k(k, candidates) == pytest.approx(chance, rel=1e-12)


@pytest.mark.parametrize("value, shown", [(0.9064, "90.64%"), (1 / 256, "0.39%"), (1e-4, "0.01%"), (1e-5, "0.001%"),
                                          (0.0, "0.00%"), (1.0, "100.00%")])
def test_percent(value, shown):
    assert percent(value) == shown


def test_the_sentences_name_the_counts_and_the_chance():
    record = {"zero_shot_top1": 0.5, "zero_shot_top5": 1.0, "zero_shot_count": 40, "classnames": ["a", "b", "c"],
              "image_to_text_R@1": 0.25, "text_to_image_R@1": 0.125, "retrieval_count": 8}
    assert zero_shot_sentence(record) == ("zero-shot top-1 50.00%, top-3 100.00% of 40 images (chance 33.33%, "
                                          "100.00%: the true class among the 1 or 3 closest of 3 class prompts)")
    assert retrieval_sentence(record) == ("retrieval R@1 image-to-text 25.00%, text-to-image 12.50% of 8 pairs (chance "
                                          "12.50%: a hit is the pair's own caption (image) ranked first of all 8, so "
                                          "captions that fit many images keep it low)")
    assert in_batch_sentence(256) == ("In-batch accuracy: the share of a step's images (captions) whose own caption "
                                      "(image) scores highest of the 256 in the global batch (chance 0.39%), so "
                                      "captions that fit many images keep it low.")


def test_the_report_explains_its_figures():
    train = ({"kind": "train", "step": 1, "i2t_accuracy": 0.04, "global_batch_size": 256},)
    evals = ({"kind": "eval", "step": 1, "zero_shot_top1": 0.9, "zero_shot_top5": 1.0, "classnames": list("ab"),
              "image_to_text_R@1": 0.01, "text_to_image_R@1": 0.02, "retrieval_count": 100},)
    notes = figure_notes(RunMetrics(train=train, evals=evals))
    assert notes == [in_batch_sentence(256), f"Last evaluation: {zero_shot_sentence(evals[0])}.",
                     f"Last evaluation: {retrieval_sentence(evals[0])}."]
    assert figure_notes(RunMetrics(train=(), evals=())) == []


def test_retrieval_over_several_captions_says_how_many_images_and_captions():
    record = {"image_to_text_R@1": 0.5, "text_to_image_R@1": 0.25, "retrieval_count": 4, "retrieval_caption_count": 9}
    assert retrieval_sentence(record) == (
        "retrieval R@1 image-to-text 50.00%, text-to-image 25.00% of 4 images with 9 captions (a hit is an image with "
        "any of its captions ranked first, or a caption with its image ranked first)")
