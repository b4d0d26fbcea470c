"""The top-level API (`cliplab.create_model`, `list_models`, `save`, `load`, `zero_shot_classifier`,
`retrieval_metrics`), used the way the README shows: through `import cliplab` alone."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import cliplab

FORMAT_1_BUNDLE = Path(__file__).resolve().parent / "fixtures" / "bundle_format_1"
# Fits the committed bundle's tokenizer (vocab 300, context 12).
OVERRIDES = {"embed_dim": 8, "vision.width": 8, "vision.layers": 1, "text.width": 16, "text.heads": 2,
             "text.layers": 1, "text.context_length": 12, "text.vocab_size": 300}
CLASSNAMES = ["bag", "coat", "ankle boot"]
TEMPLATES = ["a photo of the {}.", "a {}", "an image of the {}."]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(model built by create_model, its bundle directory written by save)."""
    _, _, tokenizer = cliplab.load(FORMAT_1_BUNDLE)
    torch.manual_seed(3)
    model = cliplab.create_model("tiny", **OVERRIDES)
    return model, cliplab.save(model, tokenizer, tmp_path_factory.mktemp("api") / "bundle")


def test_exports_are_the_documented_names_and_import_lazily():
    assert cliplab.__all__ == ["build_zero_shot_classifier", "create_model", "create_model_and_transforms",
                               "create_model_from_pretrained", "export", "get_tokenizer", "list_models", "load",
                               "load_model", "retrieval_metrics", "save", "wise_ft", "zero_shot_classifier"]
    assert set(cliplab.__all__) <= set(dir(cliplab))
    with pytest.raises(AttributeError, match="module 'cliplab' has no attribute 'train_model'"):
        cliplab.train_model
    code = "import sys, cliplab; print(sorted(m for m in ('torch', 'cliplab.models') if m in sys.modules))"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert completed.stdout.strip() == "[]"


def test_list_models_names_what_create_model_builds():
    names = cliplab.list_models()
    assert {"tiny", "tiny-coca", "tiny-siglip"} <= set(names)
    assert cliplab.create_model("tiny", **OVERRIDES).config.embed_dim == 8


def test_save_then_load_is_bitwise_and_ready_for_inference(saved):
    model, bundle = saved
    loaded, preprocess, tokenizer = cliplab.load(bundle)
    assert not loaded.training and loaded.config == model.config
    assert list(loaded.state_dict()) == list(model.state_dict())
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert tokenizer(["a bag"]).shape == (1, 12) and tokenizer(["a bag"]).dtype == torch.long
    from PIL import Image
    assert preprocess(Image.new("RGB", (40, 30), (200, 10, 10))).shape == (3, 28, 28)


def test_load_of_a_path_that_is_no_checkpoint_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a checkpoint: it holds nothing; accepted: ") as caught:
        cliplab.load(tmp_path)
    assert str(tmp_path) in str(caught.value)


def test_zero_shot_classifier_is_the_normalised_mean_of_normalised_prompt_embeddings(saved):
    model, preprocess, tokenizer = cliplab.load(saved[1])
    classifier = cliplab.zero_shot_classifier(model, tokenizer, CLASSNAMES, TEMPLATES)
    assert classifier.shape == (3, 8) and classifier.dtype == torch.float32
    with torch.no_grad():
        rows = []
        for name in CLASSNAMES:
            prompts = [template.format(name) for template in TEMPLATES]
            rows.append(F.normalize(F.normalize(model.encode_text(tokenizer(prompts)), dim=-1).mean(dim=0), dim=0))
    torch.testing.assert_close(classifier, torch.stack(rows), rtol=0, atol=1e-6)
    torch.testing.assert_close(classifier.norm(dim=-1), torch.ones(3), rtol=0, atol=1e-6)


def test_retrieval_metrics_equal_ranks_counted_directly(saved):
    model, _, tokenizer = cliplab.load(saved[1])
    images = torch.randn(6, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    captions = [f"a photo of the {name}." for name in ("bag", "coat", "dress", "sandal", "shirt", "ankle boot")]
    with torch.no_grad():
        image_features = model.encode_image(images, normalize=True)  # [6, 8]
        text_features = model.encode_text(tokenizer(captions), normalize=True)  # [6, 8]
    metrics = cliplab.retrieval_metrics(image_features, text_features, model.logit_scale.exp())

    logit_scale = model.logit_scale.detach().exp().item()
    similarity = (logit_scale * image_features @ text_features.T).tolist()  # [6 images, 6 texts]
    for direction, rows in (("image_to_text", similarity), ("text_to_image", [list(c) for c in zip(*similarity)])):
        # rank of the partner: candidates scoring higher, plus equal-scoring ones of lower index
        ranks = sorted(sum(score > row[query] or (score == row[query] and candidate < query)
                           for candidate, score in enumerate(row)) for query, row in enumerate(rows))
        assert metrics[f"{direction}_mean_rank"] == pytest.approx(sum(ranks) / 6 + 1, abs=1e-12)
        assert metrics[f"{direction}_median_rank"] == (ranks[2] + ranks[3]) // 2 + 1
        for k in (1, 5, 10):
            assert metrics[f"{direction}_R@{k}"] == pytest.approx(sum(rank < k for rank in ranks) / 6, abs=1e-12)
