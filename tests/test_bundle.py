"""Bundles: bitwise round trip, wrapped models, clear failures for bad directories and shapes."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from cliplab.bundle import load, save
from cliplab.data.tokenizer import Tokenizer
from cliplab.models import create_model

OVERRIDES = {"embed_dim": 16, "vision.width": 16, "text.width": 16, "text.heads": 2,
             "text.context_length": 12, "text.vocab_size": 300}


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(["a photo of a bag", "a photo of a boot", "a dress"] * 5, vocab_size=300,
                           context_length=12)


def tiny(name="tiny", **overrides):
    torch.manual_seed(0)
    return create_model(name, **{**OVERRIDES, **overrides})


@pytest.mark.parametrize("name", ["tiny", "tiny-coca"])
def test_round_trip_is_bitwise(name, tokenizer, tmp_path):
    model = tiny(name, **({"decoder.heads": 2} if name == "tiny-coca" else {}))
    with torch.no_grad():
        model.logit_scale.fill_(3.25)
    save(model, tokenizer, tmp_path / "bundle")
    assert sorted(path.name for path in (tmp_path / "bundle").iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json"]
    loaded, preprocess, loaded_tokenizer = load(tmp_path / "bundle")
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    original, restored = model.state_dict(), loaded.state_dict()
    assert list(original) == list(restored)
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    assert torch.equal(loaded_tokenizer(["a photo of a bag"]), tokenizer(["a photo of a bag"]))
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8))
    pixels = preprocess(image)
    assert pixels.shape == (3, 28, 28) and pixels.dtype == torch.float32
    model.eval()
    assert torch.equal(loaded.encode_image(pixels[None]), model.encode_image(pixels[None]))


def test_wrapped_models_are_saved_unwrapped(tokenizer, tmp_path):
    model = tiny()
    save(torch.compile(model), tokenizer, tmp_path / "bundle")
    assert all(not key.startswith(("_orig_mod.", "module.")) for key in load_file(tmp_path / "bundle" / "model.safetensors"))
    load(tmp_path / "bundle")


def test_not_a_bundle_names_path_and_missing_file(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="is not a directory"):
        load(tmp_path / "nowhere")
    save(tiny(), tokenizer, tmp_path / "bundle")
    (tmp_path / "bundle" / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match=r"bundle'? is not a cliplab bundle: missing tokenizer.json"):
        load(tmp_path / "bundle")


def test_shape_mismatch_names_the_first_tensor(tokenizer, tmp_path):
    save(tiny(), tokenizer, tmp_path / "bundle")
    config_path = tmp_path / "bundle" / "config.json"
    config = json.loads(config_path.read_text())
    config["embed_dim"] = 8
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"tensor 'image_projection.weight' has shape \[16, 16\] but the config gives \[8, 16\]"):
        load(tmp_path / "bundle")


def test_missing_and_extra_tensors_are_named(tokenizer, tmp_path):
    save(tiny(), tokenizer, tmp_path / "bundle")
    weights_path = tmp_path / "bundle" / "model.safetensors"
    state = load_file(weights_path)
    state["extra.weight"] = torch.zeros(1)
    save_file(state, weights_path)
    with pytest.raises(ValueError, match=r"has tensor 'extra.weight' that the config does not define"):
        load(tmp_path / "bundle")
    del state["extra.weight"], state["logit_scale"]
    save_file(state, weights_path)
    with pytest.raises(ValueError, match=r"lacks tensor 'logit_scale'"):
        load(tmp_path / "bundle")


def test_save_rejects_mismatched_tokenizer(tokenizer, tmp_path):
    with pytest.raises(ValueError, match=r"tokenizer.vocab_size \(\d+\) exceeds the model's text.vocab_size \(100\)"):
        save(tiny(**{"text.vocab_size": 100}), tokenizer, tmp_path / "bundle")
    with pytest.raises(ValueError, match="model must be a cliplab model"):
        save(torch.nn.Linear(2, 2), tokenizer, tmp_path / "bundle")
