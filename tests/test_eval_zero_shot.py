import pytest
import torch
import torch.nn.functional as F

from cliplab.eval.zero_shot import (
    ZeroShotResult,
    class_prompts,
    confusion_matrix,
    zero_shot_classifier,
    zero_shot_evaluate,
)
from eval_toy_models import BagOfTokensModel, CharacterTokenizer

CLASSNAMES = ["shirt", "bag", "ankle boot"]
TEMPLATES = ["a photo of a {}.", "{}", "a {} item"]


def _direct_classifier(model, tokenizer, classnames, templates):
    rows = []
    for name in classnames:
        prompts = [template.format(name) if isinstance(template, str) else template(name) for template in templates]
        embeddings = F.normalize(model.encode_text(tokenizer(prompts)), dim=-1)
        rows.append(F.normalize(embeddings.mean(dim=0), dim=0))
    return torch.stack(rows)


def test_classifier_is_normalised_mean_of_normalised_template_embeddings():
    model, tokenizer = BagOfTokensModel().eval(), CharacterTokenizer()
    classifier = zero_shot_classifier(model, tokenizer, CLASSNAMES, TEMPLATES)
    with torch.no_grad():
        expected = _direct_classifier(model, tokenizer, CLASSNAMES, TEMPLATES)
    assert classifier.shape == (3, 6) and classifier.dtype == torch.float32
    torch.testing.assert_close(classifier, expected)
    torch.testing.assert_close(classifier.norm(dim=1), torch.ones(3))


def test_classifier_batching_and_callable_templates_match():
    model, tokenizer = BagOfTokensModel().eval(), CharacterTokenizer()
    callables = [lambda name: f"a photo of a {name}.", lambda name: name.upper()]
    whole = zero_shot_classifier(model, tokenizer, CLASSNAMES, callables, batch_size=1000)
    in_pieces = zero_shot_classifier(model, tokenizer, CLASSNAMES, callables, batch_size=4)
    with torch.no_grad():
        expected = _direct_classifier(model, tokenizer, CLASSNAMES, callables)
    torch.testing.assert_close(whole, expected)
    torch.testing.assert_close(in_pieces, expected)


def test_classifier_restores_training_mode_and_records_no_gradient():
    model = BagOfTokensModel().train()
    model.dropout.eval()  # a submodule deliberately kept in eval mode must stay so
    classifier = zero_shot_classifier(model, CharacterTokenizer(), CLASSNAMES, TEMPLATES)
    assert model.training and not model.dropout.training
    assert not classifier.requires_grad
    # dropout inactive during the call: equal to an eval-mode computation
    torch.testing.assert_close(classifier, zero_shot_classifier(model.eval(), CharacterTokenizer(), CLASSNAMES, TEMPLATES))


def test_class_prompts_are_class_major():
    assert class_prompts(["a", "b"], ["x {}", "{} y"]) == ["x a", "a y", "x b", "b y"]


@pytest.mark.parametrize(
    "classnames, templates, message",
    [([], TEMPLATES, "classnames"), (CLASSNAMES, [], "templates"), (CLASSNAMES, ["no placeholder"], "placeholder"),
     ("shirt", TEMPLATES, "classnames")],
)
def test_bad_classifier_inputs(classnames, templates, message):
    with pytest.raises(ValueError, match=message):
        zero_shot_classifier(BagOfTokensModel(), CharacterTokenizer(), classnames, templates)


def _batches(images, labels, batch_size):
    return [{"images": images[start:start + batch_size], "labels": labels[start:start + batch_size]}
            for start in range(0, len(labels), batch_size)]


def _direct_scores(model, classifier, images):
    with torch.no_grad():
        return F.normalize(model.encode_image(images), dim=-1) @ classifier.T


def test_evaluate_matches_direct_computation():
    generator = torch.Generator().manual_seed(3)
    model = BagOfTokensModel(seed=1).eval()
    num_classes = 7
    classifier = F.normalize(torch.randn(num_classes, 6, generator=generator), dim=-1)
    images = torch.randn(50, 3, 2, 2, generator=generator)
    labels = torch.randint(0, num_classes, (50,), generator=generator)
    names = [f"class {index}" for index in range(num_classes)]

    result = zero_shot_evaluate(model, classifier, _batches(images, labels, 16), classnames=names)

    scores = _direct_scores(model, classifier, images)
    predicted = scores.argmax(dim=1)
    top5 = scores.topk(5, dim=1).indices
    assert result.count == 50
    assert result.top1 == pytest.approx((predicted == labels).float().mean().item())
    assert result.top5 == pytest.approx((top5 == labels[:, None]).any(dim=1).float().mean().item())
    expected_confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for true, guess in zip(labels.tolist(), predicted.tolist()):
        expected_confusion[true, guess] += 1
    assert torch.equal(result.confusion, expected_confusion)
    for index, name in enumerate(names):
        members = labels == index
        if members.any():
            assert result.per_class[name] == pytest.approx((predicted[members] == index).float().mean().item())
        else:
            assert name not in result.per_class
    metrics = result.as_metrics()
    assert metrics["zero_shot_top1"] == result.top1 and metrics["classnames"] == names
    assert metrics["confusion_matrix"] == expected_confusion.tolist()


def test_evaluate_accepts_pairs_and_stops_at_max_samples():
    model = BagOfTokensModel(seed=2).eval()
    # images equal to rows of W's pseudo-inverse direction: each image points at its own class
    classifier = F.normalize(torch.randn(3, 6, generator=torch.Generator().manual_seed(0)), dim=-1)
    images = torch.randn(10, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    labels = _direct_scores(model, classifier, images).argmax(dim=1)
    pairs = [(images[:4], labels[:4]), (images[4:], labels[4:])]
    result = zero_shot_evaluate(model, classifier, pairs, max_samples=7)
    assert result.count == 7 and result.top1 == 1.0 and result.top5 == 1.0  # 3 classes: top-3 always hits
    assert int(result.confusion.sum()) == 7 and set(result.per_class) <= {"0", "1", "2"}


def test_evaluate_rejects_bad_labels_and_empty_data():
    model, classifier = BagOfTokensModel(), F.normalize(torch.randn(3, 6), dim=-1)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        zero_shot_evaluate(model, classifier, [(torch.randn(2, 3, 2, 2), torch.tensor([0, 3]))])
    with pytest.raises(ValueError, match="no images"):
        zero_shot_evaluate(model, classifier, [])
    with pytest.raises(ValueError, match="'images' and 'labels'"):
        zero_shot_evaluate(model, classifier, [{"image": torch.randn(1, 3, 2, 2)}])
    with pytest.raises(ValueError, match="classnames has 2 names"):
        zero_shot_evaluate(model, classifier, [], classnames=["a", "b"])


def test_confusion_matrix_counts_pairs():
    confusion = confusion_matrix(torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 1, 0]), 3)
    assert confusion.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 0]]
    assert isinstance(ZeroShotResult(1.0, 1.0, {}, confusion, 4, ("a", "b", "c"), 0.5, float("nan")).as_metrics()["zero_shot_count"], int)


@pytest.mark.parametrize("num_classes", [7, 3])  # acc5, and NaN below 5 classes
def test_benchmark_metrics_equal_clip_benchmarks_evaluate(num_classes):
    from clip_benchmark_oracle import zero_shot

    model, tokenizer = BagOfTokensModel(seed=4).eval(), CharacterTokenizer()
    generator = torch.Generator().manual_seed(5)
    classnames = [f"class {chr(97 + index)}" for index in range(num_classes)]
    templates = ["a photo of a {c}.", "the {c}", "{c} seen from afar"]
    images = torch.randn(60, 3, 2, 2, generator=generator)
    labels = torch.randint(0, num_classes, (60,), generator=generator)
    classifier = zero_shot_classifier(model, tokenizer, classnames, templates)
    ours = zero_shot_evaluate(model, classifier, _batches(images, labels, 16), classnames=classnames)
    theirs = zero_shot(model, tokenizer, images, labels, classnames, templates, batch_size=16)
    assert set(theirs) == set(ours.benchmark_metrics())
    for key, value in ours.benchmark_metrics().items():
        assert value == pytest.approx(theirs[key], rel=1e-12, nan_ok=True), key
    assert ours.mean_per_class_recall == pytest.approx(sum(ours.per_class.values()) / len(ours.per_class))


def test_cliplab_and_clip_benchmark_templates_give_the_same_prompts():
    assert class_prompts(["bag"], ["a {c}.", "a {}.", lambda name: name.upper()]) == ["a bag.", "a bag.", "BAG"]
