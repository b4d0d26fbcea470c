import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cliplab.eval.retrieval import ground_truth_ranks, retrieval_metrics


def _direct_metrics(image_features, text_features, logit_scale):
    """open_clip's get_clip_metrics, written out with numpy."""
    logits_per_image = logit_scale * image_features.numpy() @ text_features.numpy().T
    metrics = {}
    for name, logits in (("image_to_text", logits_per_image), ("text_to_image", logits_per_image.T)):
        order = np.argsort(-logits, axis=1, kind="stable")
        ranks = np.array([int(np.where(order[row] == row)[0][0]) for row in range(len(order))])
        metrics[f"{name}_mean_rank"] = ranks.mean() + 1
        metrics[f"{name}_median_rank"] = np.floor(np.median(ranks)) + 1
        for k in (1, 5, 10):
            metrics[f"{name}_R@{k}"] = np.mean(ranks < k)
    return metrics


@pytest.mark.parametrize("count", [1, 12, 37])
def test_metrics_equal_direct_computation(count):
    generator = torch.Generator().manual_seed(count)
    image_features = F.normalize(torch.randn(count, 16, generator=generator), dim=-1)
    text_features = F.normalize(image_features + 1.5 * torch.randn(count, 16, generator=generator), dim=-1)
    metrics = retrieval_metrics(image_features, text_features, torch.tensor(42.0))
    expected = _direct_metrics(image_features, text_features, 42.0)
    assert set(metrics) == set(expected)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(float(value), abs=1e-12), key


def test_even_count_median_is_floor_of_numpy_median():
    # ranks 0, 1, 2, 3 in image->text: median 1.5 -> floor 1 -> reported 2
    logits = torch.tensor([[9.0, 0, 0, 0], [2, 1, 0, 0], [3, 2, 1, 0], [4, 3, 2, 1]])
    assert ground_truth_ranks(logits).tolist() == [0, 1, 2, 3]
    image_features = torch.eye(4)
    metrics = retrieval_metrics(image_features, logits.T.contiguous(), 1.0)
    assert metrics["image_to_text_median_rank"] == 2.0
    assert metrics["image_to_text_mean_rank"] == 2.5
    assert metrics["image_to_text_R@1"] == 0.25


def test_perfectly_matched_embeddings_have_recall_one():
    features = torch.eye(11)
    metrics = retrieval_metrics(features, features.clone(), 100.0)
    for direction in ("image_to_text", "text_to_image"):
        assert metrics[f"{direction}_R@1"] == 1.0
        assert metrics[f"{direction}_R@5"] == 1.0
        assert metrics[f"{direction}_mean_rank"] == 1.0
        assert metrics[f"{direction}_median_rank"] == 1.0


def test_reversed_pairs_put_partner_last():
    image_features = torch.eye(6)
    text_features = 1.0 - torch.eye(6)  # partner is the least similar candidate
    metrics = retrieval_metrics(image_features, text_features)
    assert metrics["image_to_text_R@5"] == 0.0
    assert metrics["image_to_text_R@10"] == 1.0
    assert metrics["image_to_text_mean_rank"] == 6.0


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="image_features and text_features"):
        retrieval_metrics(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="text_features must be a 2-D float"):
        retrieval_metrics(torch.zeros(3, 4), torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="logit_scale"):
        retrieval_metrics(torch.eye(3), torch.eye(3), 0.0)
    with pytest.raises(ValueError, match="at least one"):
        retrieval_metrics(torch.zeros(0, 4), torch.zeros(0, 4))


def test_a_models_retrieval_is_the_metrics_of_its_unit_norm_embeddings_up_to_max_samples():
    from cliplab.eval.retrieval import evaluate_retrieval
    from eval_toy_models import BagOfTokensModel

    model = BagOfTokensModel()
    model.logit_scale = torch.nn.Parameter(torch.tensor(10.0))  # exp(10) > 100: clamped, as the loss does
    generator = torch.Generator().manual_seed(0)
    images, tokens = torch.randn(7, 3, 2, 2, generator=generator), torch.randint(1, 64, (7, 5), generator=generator)
    batches = [{"images": images[:4], "tokens": tokens[:4]}, {"images": images[4:], "tokens": tokens[4:]}]
    metrics, count = evaluate_retrieval(model, batches, max_samples=6)
    assert model.training  # its mode restored
    model.eval()  # dropout off, as evaluate_retrieval runs it
    with torch.no_grad():
        expected = retrieval_metrics(model.encode_image(images[:6], normalize=True),
                                     model.encode_text(tokens[:6], normalize=True), 100.0)
    assert count == 6 and metrics == expected


def test_caption_recall_equals_clip_benchmarks_evaluate_with_shared_captions_and_a_captionless_image():
    from clip_benchmark_oracle import retrieval
    from cliplab.eval.retrieval import caption_retrieval_recall
    from eval_toy_models import BagOfTokensModel, CharacterTokenizer

    model, tokenizer = BagOfTokensModel(seed=7).eval(), CharacterTokenizer()
    generator = torch.Generator().manual_seed(8)
    images = torch.randn(23, 3, 2, 2, generator=generator)
    words = ["cat", "dog", "bird", "fish"]
    captions = [[f"a {words[index % 4]}", f"the {words[(index * 3) % 4]} {index}"][: 1 + index % 2]
                for index in range(23)]
    captions[5] = []  # an image nobody describes: never found
    theirs = retrieval(model, tokenizer, images, captions, recall_k=(1, 3, 7), batch_size=8)
    with torch.no_grad():
        image_features = F.normalize(model.encode_image(images), dim=-1)
        texts = [text for texts in captions for text in texts]
        text_features = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)
    image_of_text = torch.tensor([image for image, texts in enumerate(captions) for _ in texts])
    ours = caption_retrieval_recall(image_features, text_features, image_of_text, (1, 3, 7))
    assert ours == theirs


def test_caption_recall_closed_form_and_bad_k():
    from cliplab.eval.retrieval import caption_retrieval_recall

    images = torch.eye(3)
    texts = torch.tensor([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0], [0.6, 0.8, 0]])  # image 0 has texts 0 and 3
    image_of_text = torch.tensor([0, 0, 1, 2])
    metrics = caption_retrieval_recall(images, texts, image_of_text, (1,))
    # texts: 0 -> image 0 (hit), 1 -> image 2 (miss), 2 -> image 1 (hit), 3 -> image 1 (miss)
    # images: 0 -> text 0 (hit), 1 -> text 2 (hit), 2 -> text 1 (image 0's: miss)
    assert metrics == {"image_retrieval_recall@1": 0.5, "text_retrieval_recall@1": pytest.approx(2 / 3)}
    with pytest.raises(ValueError, match=r"recall@4 needs 1 <= k <= min\(3 images, 4 captions\)"):
        caption_retrieval_recall(images, texts, image_of_text, (4,))


def test_caption_recall_in_row_chunks_equals_one_chunk(monkeypatch):
    from cliplab.eval import retrieval as retrieval_module

    generator = torch.Generator().manual_seed(9)
    images = F.normalize(torch.randn(11, 8, generator=generator), dim=-1)
    texts = F.normalize(torch.randn(25, 8, generator=generator), dim=-1)
    image_of_text = torch.arange(25) % 11
    whole = retrieval_module.caption_retrieval_recall(images, texts, image_of_text, (1, 4))
    chunks = retrieval_module._row_chunks
    monkeypatch.setattr(retrieval_module, "_row_chunks", lambda matrix: chunks(matrix, rows=3))
    assert retrieval_module.caption_retrieval_recall(images, texts, image_of_text, (1, 4)) == whole


def test_images_with_several_captions_are_found_by_any_of_them_as_clip_benchmark_counts():
    from cliplab.eval.retrieval import caption_list_metrics, caption_retrieval_recall, evaluate_retrieval
    from eval_toy_models import BagOfTokensModel

    model = BagOfTokensModel(seed=4).eval()
    generator = torch.Generator().manual_seed(6)
    images, tokens = torch.randn(6, 3, 2, 2, generator=generator), torch.randint(1, 64, (10, 4), generator=generator)
    lists = [["a", "b"], ["c"], ["d", "e", "f"], ["g"], ["h", "i"], ["j"]]
    batches = [{"images": images, "tokens": tokens[:6], "caption_lists": lists, "caption_tokens": tokens}]
    metrics, count = evaluate_retrieval(model, batches)
    with torch.no_grad():
        image_features = F.normalize(model.encode_image(images), dim=-1)
        text_features = F.normalize(model.encode_text(tokens), dim=-1)
    owners = torch.tensor([0, 0, 1, 2, 2, 2, 3, 4, 4, 5])
    theirs = caption_retrieval_recall(image_features, text_features, owners, (1, 5))
    assert count == 6 and metrics == caption_list_metrics(image_features, text_features, owners)
    assert metrics == {"image_to_text_R@1": theirs["text_retrieval_recall@1"],
                       "text_to_image_R@1": theirs["image_retrieval_recall@1"],
                       "image_to_text_R@5": theirs["text_retrieval_recall@5"],
                       "text_to_image_R@5": theirs["image_retrieval_recall@5"], "retrieval_caption_count": 10}


def test_one_caption_each_in_caption_lists_gives_the_pair_metrics():
    from cliplab.eval.retrieval import evaluate_retrieval
    from eval_toy_models import BagOfTokensModel

    model = BagOfTokensModel(seed=4)
    model.logit_scale = torch.nn.Parameter(torch.tensor(2.0))
    generator = torch.Generator().manual_seed(6)
    images, tokens = torch.randn(6, 3, 2, 2, generator=generator), torch.randint(1, 64, (6, 4), generator=generator)
    pairs = evaluate_retrieval(model, [{"images": images, "tokens": tokens}])
    lists = evaluate_retrieval(model, [{"images": images, "tokens": tokens, "caption_lists": [["x"]] * 6,
                                        "caption_tokens": tokens}])
    assert pairs == lists and "image_to_text_mean_rank" in pairs[0]
