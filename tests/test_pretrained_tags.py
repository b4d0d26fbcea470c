"""pretrained/tags: open_clip's table of pretrained tags as data, and `pretrained=TAG` read through
the Hugging Face cache (a cache the tests build in huggingface_hub's layout, read offline)."""

import warnings
from pathlib import Path

import pytest
import torch

import cliplab
from cliplab.errors import UserError
from cliplab.models import registry
from cliplab.models.open_clip_config import config_from_open_clip
from cliplab.pretrained import tags
from cliplab.pretrained.tags import PretrainedTag

from finetune_fixtures import PREPROCESS_CFG, SMALL_OPEN_CLIP_CFG, write_small_hub
from test_pretrained_hf_cache import build_cache

REPO = "test-org/small-clip"
SMALL = "small-test-clip"  # an architecture the tests register: SMALL_OPEN_CLIP_CFG
# Not the hub directory's own preprocessing (finetune_fixtures.PREPROCESS_CFG), so that the tag's shows.
TAG_MEAN, TAG_STD = (0.1, 0.2, 0.3), (0.4, 0.5, 0.6)


# --- the table: open_clip 3.3.0's, as data ------------------------------------------------------

@pytest.fixture(scope="module")
def open_clip_pretrained():
    from reference_libraries import open_clip
    return open_clip().pretrained


def test_the_table_is_open_clips_in_its_order(open_clip_pretrained):
    assert cliplab.list_pretrained() == open_clip_pretrained.list_pretrained()
    assert cliplab.list_pretrained(as_str=True) == open_clip_pretrained.list_pretrained(as_str=True)
    assert len(cliplab.list_pretrained()) == 196
    for model, tag in cliplab.list_pretrained():
        theirs = open_clip_pretrained.get_pretrained_cfg(model, tag)
        ours = tags.find_pretrained_tag(model, tag)
        assert (ours.hf_hub, ours.mean, ours.std, ours.interpolation, ours.resize_mode, ours.quick_gelu) == (
            theirs["hf_hub"], tuple(theirs["mean"]), tuple(theirs["std"]), theirs["interpolation"],
            theirs["resize_mode"], theirs.get("quick_gelu", False)), (model, tag)
    for model in ("ViT-B-32", "RN50-quickgelu", "EVA02-B-16", "no-such-model"):
        assert cliplab.list_pretrained_tags_by_model(model) == open_clip_pretrained.list_pretrained_tags_by_model(model)
    for tag in ("openai", "LAION2B-S34B-B79K", "datacomp1b"):
        assert cliplab.list_pretrained_models_by_tag(tag) == open_clip_pretrained.list_pretrained_models_by_tag(tag)


def test_tags_and_names_are_matched_as_open_clip_matches_them():
    assert tags.find_pretrained_tag("ViT-B/32", "LAION2B-S34B-B79K").tag == "laion2b_s34b_b79k"
    assert tags.find_pretrained_tag("ViT-B-32", "laion2b") is None
    assert tags.find_pretrained_tag("no-such-model", "openai") is None


def test_the_weights_are_looked_up_in_open_clips_order():
    default = tags.find_pretrained_tag("ViT-B-32", "laion2b_s34b_b79k")
    assert (default.repo_id, default.weight_files) == (
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))
    named = tags.find_pretrained_tag("ViTamin-S", "datacomp1b")
    assert (named.repo_id, named.weight_files) == ("jienengchen/ViTamin-S",
                                                   ("pytorch_model.safetensors", "pytorch_model.bin"))


# --- pretrained=TAG through the Hugging Face cache ------------------------------------------------

@pytest.fixture
def cached_tag(tmp_path, monkeypatch):
    """A Hugging Face cache (HF_HOME, offline) holding REPO: a small random open_clip hub directory;
    SMALL registered as its architecture, and the tag ("small-test-clip", "test_tag") pointing at it."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = build_cache(tmp_path / "hf" / "hub", REPO, {})
    write_small_hub(snapshot, seed=1)
    monkeypatch.setitem(registry._registered_configs, SMALL, config_from_open_clip(SMALL_OPEN_CLIP_CFG).to_dict())
    add_tag(monkeypatch, "test_tag", quick_gelu=False)
    return snapshot


def add_tag(monkeypatch, tag: str, *, quick_gelu: bool) -> None:
    entry = PretrainedTag(model=SMALL, tag=tag, hf_hub=f"{REPO}/", mean=TAG_MEAN, std=TAG_STD,
                          interpolation="bilinear", resize_mode="squash", quick_gelu=quick_gelu)
    monkeypatch.setitem(tags._table(), SMALL, {**tags._table().get(SMALL, {}), tag: entry})


def _assert_same_weights(model, reference):
    state = reference.state_dict()
    assert model.state_dict().keys() == state.keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[name]), name


def test_a_tag_loads_offline_from_a_populated_cache(cached_tag):
    hub_model, _, _ = cliplab.load(cached_tag)  # the same files, read as a directory
    model, preprocess_train, preprocess_val = cliplab.create_model_and_transforms(SMALL, pretrained="Test-Tag")
    _assert_same_weights(model, hub_model)
    assert not model.training
    config = preprocess_val.config  # the tag's preprocessing, not the hub directory's own
    assert (config.mean, config.std, config.interpolation, config.resize_mode) == (TAG_MEAN, TAG_STD, "bilinear",
                                                                                    "squash")
    assert config.image_size == SMALL_OPEN_CLIP_CFG["vision_cfg"]["image_size"] and preprocess_train.train
    again, _ = cliplab.create_model_from_pretrained(SMALL, pretrained="test_tag")
    _assert_same_weights(again, hub_model)
    loaded = cliplab.load_model("test_tag", model=SMALL)
    assert loaded.format == "open_clip_checkpoint" and loaded.path == cached_tag / "open_clip_model.safetensors"
    assert torch.equal(loaded.tokenizer(["a cat"]), cliplab.tokenize(["a cat"]))
    by_repo, _, _ = cliplab.load(f"hf-hub:{REPO}")
    _assert_same_weights(by_repo, hub_model)
    assert by_repo.config.preprocess.mean == tuple(PREPROCESS_CFG["mean"])  # hf-hub: the directory's own


def test_a_tag_trained_with_quick_gelu_builds_the_architecture_with_it(cached_tag, monkeypatch):
    add_tag(monkeypatch, "quick", quick_gelu=True)
    with pytest.warns(UserWarning, match=r"pretrained tag 'quick' of small-test-clip was trained with QuickGELU"):
        model = cliplab.load_model("quick", model=SMALL).model
    assert model.config.vision.activation == model.config.text.activation == "quick_gelu"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the tag that needs no QuickGELU says nothing
        plain = cliplab.load_model("test_tag", model=SMALL).model
    assert plain.config.vision.activation == "gelu"
    _assert_same_weights(model, plain)  # QuickGELU has no parameters


def test_a_tag_neither_cached_nor_downloadable_is_one_line_naming_the_repository_and_the_cache(cached_tag):
    with pytest.raises(UserError) as raised:
        cliplab.create_model_and_transforms("ViT-B-32", pretrained="laion2b_s34b_b79k")
    message = str(raised.value)
    assert "\n" not in message
    hub = Path(cached_tag).parents[2]
    assert message.startswith(f"pretrained tag 'laion2b_s34b_b79k' of ViT-B-32: Hugging Face repository "
                              f"laion/CLIP-ViT-B-32-laion2B-s34B-b79K has none of open_clip_model.safetensors, "
                              f"open_clip_pytorch_model.bin in the cache {hub} and could not be downloaded")


def test_a_tag_of_an_architecture_cliplab_does_not_build_is_refused_before_any_download(cached_tag):
    built = set(cliplab.list_models())
    unbuilt = [(model, tag) for model, tag in cliplab.list_pretrained() if model not in built]
    if not unbuilt:
        pytest.skip("cliplab builds every architecture of open_clip's tags")
    model, tag = unbuilt[0]
    with pytest.raises(UserError) as raised:
        cliplab.create_model_and_transforms(model, pretrained=tag)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"pretrained tag {tag!r} of {model}: ")
    assert "which cliplab does not build" in message and "cache" not in message  # nothing was looked up


def test_an_unknown_tag_names_the_models_tags_and_a_bare_tag_asks_for_the_architecture(cached_tag):
    with pytest.raises(UserError) as raised:
        cliplab.create_model_and_transforms(SMALL, pretrained="test-tga")
    assert str(raised.value) == ("checkpoint path test-tga does not exist, and it is not a pretrained tag of "
                                 "small-test-clip: closest tags of small-test-clip: test_tag "
                                 "(cliplab.list_pretrained_tags_by_model('small-test-clip') lists all 1)")
    with pytest.raises(UserError) as raised:
        cliplab.create_model_and_transforms("ViT-B-32", pretrained="laion2b_s34b")
    assert str(raised.value).endswith("closest tags of ViT-B-32: laion2b_s34b_b79k, laion2b_e16, laion400m_e32, "
                                      "laion400m_e31, commonpool_s_laion_s13m_b4k (cliplab.list_pretrained_tags_by_"
                                      "model('ViT-B-32') lists all 22)")
    with pytest.raises(UserError) as raised:
        cliplab.load("laion2b_s34b_b79k")
    assert str(raised.value) == ("checkpoint path laion2b_s34b_b79k does not exist; 'laion2b_s34b_b79k' is an "
                                 "open_clip pretrained tag of ViT-B-32: name the architecture (model=NAME, --model)")


def test_pretrained_tag_with_model_starts_a_training_run(cached_tag):
    from cliplab.train.config import ModelSetupConfig
    from cliplab.train.setup.model import build_training_model

    built = build_training_model(ModelSetupConfig(name=SMALL, pretrained="test_tag"), torch.device("cpu"))
    _assert_same_weights(built.model, cliplab.load(cached_tag)[0])
    assert built.origin.startswith(f"the pretrained checkpoint {cached_tag / 'open_clip_model.safetensors'}")
    assert built.model.config.preprocess.mean == TAG_MEAN


def test_tokenize_is_open_clips():
    from reference_libraries import open_clip
    texts = ["a photo of a cat!", "x" * 400, "", "Ünïcode &amp; html"]
    assert torch.equal(cliplab.tokenize(texts), open_clip().tokenize(texts))
    assert torch.equal(cliplab.tokenize("a cat", context_length=16), open_clip().tokenize("a cat", context_length=16))
