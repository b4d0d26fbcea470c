"""The top-level API (`cliplab.create_model`, `list_models`, `save`, `load`, `zero_shot_classifier`,
`retrieval_metrics`, and open_clip's entry points `create_model_and_transforms`,
`create_model_from_pretrained`, `get_tokenizer`, `build_zero_shot_classifier`), used the way the
README shows: through `import cliplab` alone."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import cliplab
from cliplab.errors import UserError

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
                               "create_model_from_pretrained", "export", "get_tokenizer", "list_models",
                               "list_pretrained", "list_pretrained_models_by_tag", "list_pretrained_tags_by_model",
                               "load", "load_model", "retrieval_metrics", "save", "tokenize", "wise_ft",
                               "zero_shot_classifier"]
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


# --- open_clip's entry points and conventions ---------------------------------------------------

@pytest.fixture(scope="module")
def open_clip_hub(tmp_path_factory):
    """An open_clip hub directory of a small ViT (open_clip's layout, random weights)."""
    from test_pretrained_loaders import CASES, contiguous_state, write_hub

    from reference_libraries import open_clip_model, randomize_
    return write_hub(tmp_path_factory.mktemp("hub") / "hub", CASES["vit"],
                     contiguous_state(randomize_(open_clip_model(CASES["vit"]), seed=4)))


def test_create_model_and_transforms_and_from_pretrained_as_open_clip(open_clip_hub):
    model, preprocess_train, preprocess_val = cliplab.create_model_and_transforms("ViT-B-32", pretrained=None)
    assert model.training and model.config.vision.patch_size == 32 and preprocess_train.train
    loaded, _, preprocess = cliplab.create_model_and_transforms(f"local-dir:{open_clip_hub}")
    assert not loaded.training and not preprocess.train and preprocess.config.mean == (0.5, 0.5, 0.5)
    again, preprocess_again = cliplab.create_model_from_pretrained(f"local-dir:{open_clip_hub}")
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name
    from PIL import Image
    from cliplab.data.tokenizer_openai import openai_bpe_tokenizer
    tokens = openai_bpe_tokenizer()(["a cat", "a dog"])
    image_features, text_features, logit_scale = again(torch.stack([preprocess_again(Image.new("RGB", (40, 30)))] * 2),
                                                       tokens)
    assert image_features.shape == text_features.shape == (2, 32) and logit_scale.dim() == 0
    with pytest.raises(UserError, match=r"model_name 'local-dir:.*' carries its weights: pass pretrained=None"):
        cliplab.create_model_and_transforms(f"local-dir:{open_clip_hub}", pretrained=str(open_clip_hub))


def test_missing_files_fail_with_what_to_do():
    with pytest.raises(UserError, match=r"^checkpoint path nowhere/weights.bin does not exist$"):
        cliplab.create_model_from_pretrained("ViT-B-32", pretrained="nowhere/weights.bin")
    with pytest.raises(UserError, match="needs pretrained=PATH"):
        cliplab.create_model_from_pretrained("ViT-B-32")


def test_get_tokenizer_gives_open_clips_tokenizer_for_names_and_the_checkpoints_for_paths(open_clip_hub, tmp_path,
                                                                                           monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty Hugging Face cache
    from reference_libraries import open_clip
    texts = ["a photo of a cat!", "x" * 400, ""]
    for name in ("ViT-B-32", "coca_ViT-B-32", "RN50"):
        assert torch.equal(cliplab.get_tokenizer(name)(texts), open_clip().get_tokenizer(name)(texts))
    assert torch.equal(cliplab.get_tokenizer(f"local-dir:{open_clip_hub}")(texts), cliplab.get_tokenizer("ViT-B-32")(texts))
    with pytest.raises(UserError, match=r"Hugging Face tokenizer 'bert-base-uncased' of this model is not in the"):
        cliplab.get_tokenizer("ViT-L-14-CLIPA")
    with pytest.raises(UserError, match=r"cliplab's own architectures \(e.g. 'tiny'\) train their tokenizer"):
        cliplab.get_tokenizer("tiny")


def test_the_trainers_entry_point_builds_the_dict_model_with_tokenizer_and_preprocessing(open_clip_hub):
    loaded = cliplab.load_model(open_clip_hub, output_dict=True)
    output = loaded.model(torch.zeros(1, 3, 32, 32), loaded.tokenizer(["a cat"]))
    assert set(output) == {"image_features", "text_features", "logit_scale"}
    assert loaded.model.config.preprocess.mean == (0.5, 0.5, 0.5) and loaded.tokenizer.pad_id == 0
    on_meta = cliplab.load_model(open_clip_hub, device="meta", output_dict=True)
    assert all(parameter.is_meta for parameter in on_meta.model.parameters())


def test_zero_shot_classifier_shapes_are_one_convention_and_the_other_is_refused(saved):
    from cliplab.eval.zero_shot import zero_shot_evaluate
    model, _, tokenizer = cliplab.load(saved[1])
    ours = cliplab.zero_shot_classifier(model, tokenizer, CLASSNAMES, TEMPLATES)          # [C, E]
    theirs = cliplab.build_zero_shot_classifier(model, tokenizer, CLASSNAMES, TEMPLATES)  # [E, C]
    assert ours.shape == (3, 8) and torch.equal(theirs, ours.T)
    batches = [(torch.randn(4, 3, 28, 28), torch.tensor([0, 1, 2, 0]))]
    assert zero_shot_evaluate(model, ours, batches, CLASSNAMES).count == 4
    with pytest.raises(ValueError, match=r"shape \(8, 3\): that is open_clip's \[E, C\] layout.*pass classifier.T"):
        zero_shot_evaluate(model, theirs, batches, CLASSNAMES)
