"""Hugging Face transformers directories load exactly: CLIPModel (model.safetensors, a sharded index,
pytorch_model.bin; eos pooling and the legacy argmax rule) and SiglipModel, built with the real
library from small configs with random weights, compared on the same inputs (fp32, eval, 1e-5
relative), with their tokenizer files and preprocessor_config.json; unsupported settings are refused."""

import json
import shutil

import pytest
import torch

from cliplab.model_io import load_model
from cliplab.data.tokenizer_files import write_hf_tokenizer_files
from cliplab.data.tokenizer_openai import openai_bpe_tokenizer
from cliplab.errors import UserError
from cliplab.models.open_clip_config import UnsupportedArchitectureError
from cliplab.pretrained.hf_config import config_from_hf
from reference_libraries import assert_relative_close, randomize_, transformers
# session fixtures: spiece_model, siglip_tokenizer_dirs
from tokenizer_fixtures import siglip_tokenizer_dirs, spiece_model  # noqa: F401

torch.set_num_threads(2)
TEXT = dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4)
VISION = dict(hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4, image_size=32,
              patch_size=8)
TEXTS = ["a photo of a cat!", "two dogs", ""]


def hf_clip(eos_token_id=49407, seed=1):
    library = transformers()
    config = library.CLIPConfig(text_config=dict(TEXT, eos_token_id=eos_token_id), vision_config=VISION,
                                projection_dim=32)
    torch.manual_seed(0)
    return randomize_(library.CLIPModel(config), seed)


def hf_siglip(seed=2):
    library = transformers()
    config = library.SiglipConfig(text_config=dict(TEXT, vocab_size=500, max_position_embeddings=16,
                                                   projection_size=48), vision_config=VISION)
    torch.manual_seed(0)
    return randomize_(library.SiglipModel(config), seed)


def images():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))


def clip_tokens():
    tokens = openai_bpe_tokenizer()(TEXTS)
    tokens[1, 2] = 0  # "!" inside the text: HF pools at eos, not at the padding
    return tokens


def assert_same_outputs(ours, reference, tokens):
    with torch.no_grad():
        assert_relative_close(ours.encode_image(images()),
                              reference.get_image_features(pixel_values=images()).pooler_output)
        assert_relative_close(ours.encode_text(tokens), reference.get_text_features(input_ids=tokens).pooler_output)
    assert float(ours.logit_scale) == float(reference.logit_scale)
    if ours.logit_bias is not None:
        assert float(ours.logit_bias) == float(reference.logit_bias)


def save_clip_directory(model, directory, weights="model.safetensors"):
    if weights == "model.safetensors":
        model.save_pretrained(directory)
    elif weights == "model.safetensors.index.json":
        model.save_pretrained(directory, max_shard_size="1MB")
    else:
        model.config.save_pretrained(directory)
        torch.save(model.state_dict(), directory / "pytorch_model.bin")
    write_hf_tokenizer_files(openai_bpe_tokenizer(), directory)
    transformers().CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                      image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.2, 0.2]).save_pretrained(directory)
    return directory


@pytest.mark.parametrize("weights", ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"])
def test_clip_directory_loads_exactly_with_tokenizer_and_preprocessing(weights, tmp_path):
    reference = hf_clip()
    directory = save_clip_directory(reference, tmp_path / "clip", weights)
    assert (directory / weights).is_file()
    loaded = load_model(directory)
    assert loaded.format == "hf" and loaded.model.config.text.pool == "eos"
    assert_same_outputs(loaded.model, reference, clip_tokens())
    hf_ids = transformers().CLIPTokenizer.from_pretrained(directory)(TEXTS, padding="max_length",
                                                                   max_length=77).input_ids
    assert loaded.tokenizer(TEXTS).tolist() == hf_ids
    preprocess = loaded.model.config.preprocess
    assert (preprocess.image_size, preprocess.mean, preprocess.resize_mode) == (32, (0.5, 0.4, 0.3), "shortest")


def test_legacy_eos_token_id_2_pools_at_the_largest_id(tmp_path):
    reference = hf_clip(eos_token_id=2, seed=3)
    reference.save_pretrained(tmp_path / "legacy")
    loaded = load_model(tmp_path / "legacy", require_tokenizer=False)
    assert loaded.model.config.text.pool == "argmax" and loaded.tokenizer is None
    assert_same_outputs(loaded.model, reference, clip_tokens())


def test_siglip_directory_loads_exactly_and_says_when_it_has_no_tokenizer(tmp_path):
    reference = hf_siglip()
    reference.save_pretrained(tmp_path / "siglip")
    with pytest.raises(UserError, match=r"siglip: no tokenizer cliplab reads \(.*holds no Hugging Face tokenizer: "
                                        r"expected tokenizer.json.*pass require_tokenizer=False"):
        load_model(tmp_path / "siglip")
    loaded = load_model(tmp_path / "siglip", require_tokenizer=False)
    config = loaded.model.config
    assert (config.kind, config.vision.pool, config.vision.class_token, config.text.pool) == (
        "siglip", "probe", False, "last")
    tokens = torch.randint(1, 500, (3, 16), generator=torch.Generator().manual_seed(0))
    tokens[0, 9:] = 1  # padding, which SigLIP runs through attention and pools at the last position
    assert_same_outputs(loaded.model, reference, tokens)


def test_a_siglip_directory_as_google_publishes_it_loads_with_its_tokenizer(tmp_path, siglip_tokenizer_dirs):
    """spiece.model and Google's tokenizer_config.json, no tokenizer.json: transformers' SiglipTokenizer."""
    reference = hf_siglip()
    reference.save_pretrained(tmp_path / "siglip")
    for name in ("spiece.model", "tokenizer_config.json"):
        shutil.copy(siglip_tokenizer_dirs["spiece"] / name, tmp_path / "siglip" / name)
    loaded = load_model(tmp_path / "siglip")
    texts = ["A photo of a CAT!", "two </s> dogs", "", "the " * 20]
    expected = transformers().AutoTokenizer.from_pretrained(str(tmp_path / "siglip"))(
        texts, padding="max_length", max_length=16, truncation=True, return_tensors="pt").input_ids
    assert loaded.tokenizer.kind == "sentencepiece" and torch.equal(loaded.tokenizer(texts), expected)
    assert loaded.model.config.text.pad_id == 1
    assert_same_outputs(loaded.model, reference, expected)


@pytest.mark.parametrize("change, message", [
    ({"vision_config": {"hidden_act": "relu"}}, r"vision_config.hidden_act='relu': cliplab supports"),
    ({"vision_config": {"num_channels": 1}}, r"num_channels=1: cliplab models take RGB images"),
    ({"model_type": "blip"}, r"model_type='blip': cliplab reads \('clip', 'siglip', 'siglip2'\)"),
])
def test_unsupported_hf_configs_are_refused(change, message):
    values = json.loads(hf_clip().config.to_json_string())
    for key, value in change.items():
        if isinstance(value, dict):
            values[key].update(value)
        else:
            values[key] = value
    with pytest.raises(UnsupportedArchitectureError, match=message):
        config_from_hf(values)
    siglip = json.loads(hf_siglip().config.to_json_string())
    siglip["vision_config"]["vision_use_head"] = False
    with pytest.raises(UnsupportedArchitectureError, match="vision_use_head=false"):
        config_from_hf(siglip)
