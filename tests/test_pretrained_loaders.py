"""open_clip and OpenAI checkpoints load exactly: every architecture family (small random-weight
configs) and one real-size ViT-B-32 and RN50, in every file layout (hub directory under its three
weight names, epoch_K.pt with and without `module.`, a bare weights file, OpenAI TorchScript and
plain fp16 state dicts, `local-dir:`), compared with the real open_clip on the same inputs (fp32,
eval, 1e-5 relative). Plus the errors: unrecognised files, mismatched state dicts, `hf-hub:` offline.
The Hugging Face formats are in test_pretrained_hf_config.py."""

import copy
import json

import pytest
import torch
from safetensors.torch import save_file

from cliplab.data.tokenizer_openai import openai_bpe_tokenizer
from cliplab.errors import UserError
from cliplab.model_io import load_model
from cliplab.pretrained.key_maps import StateDictMismatchError
from reference_libraries import (assert_relative_close, open_clip, open_clip_model, randomize_,
                                 reference_mode)

torch.set_num_threads(2)
TEXTS = ["a photo of a cat!", "wow!! two dogs", "", "a diagram " * 40]


def small_cfg(vision=None, text=None, **top) -> dict:
    return {"embed_dim": 32,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 16,
                           **(vision or {})},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 48, "heads": 4, "layers": 2,
                         **(text or {})},
            **top}


COCA = small_cfg(vision={"attentional_pool": True, "attn_pooler_heads": 4, "attn_pooler_queries": 9,
                         "output_tokens": True},
                 text={"embed_cls": True, "context_length": 76, "width": 32, "output_tokens": True})
COCA.update(multimodal_cfg={"width": 32, "heads": 4, "layers": 2, "context_length": 76, "vocab_size": 49408},
            custom_text=True)
CASES = {
    "vit": small_cfg(),
    # OpenAI's shape rules: 64-wide heads in both towers
    "quickgelu": small_cfg(quick_gelu=True, vision={"width": 128, "head_width": 64}, text={"width": 128, "heads": 2}),
    "clipa": small_cfg(vision={"no_ln_pre": True, "pool_type": "avg", "final_ln_after_pool": True},
                       text={"pool_type": "last", "no_causal_mask": True}),
    "layer_scale_eos_bias": small_cfg(vision={"ls_init_value": 0.1},
                                      text={"ls_init_value": 0.1, "pool_type": "eos", "eos_id": 49407,
                                            "proj_bias": True}),
    "resnet": small_cfg(vision={"layers": [1, 2, 1, 1], "width": 16, "image_size": 64, "head_width": 32}),
    "coca": COCA,
}
PREPROCESS_CFG = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bilinear"}


@pytest.fixture(scope="module")
def references():
    """name -> open_clip model with seeded random weights (built once per module)."""
    cache = {}

    def build(name):
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = randomize_(open_clip_model(CASES[name]), seed=len(cache) + 1)
        return cache[name]
    return build


def inputs(model_cfg, context_length=None):
    size = model_cfg["vision_cfg"]["image_size"]
    images = torch.randn(len(TEXTS), 3, size, size, generator=torch.Generator().manual_seed(5))
    length = context_length or model_cfg["text_cfg"]["context_length"]
    tokens = openai_bpe_tokenizer(length)(TEXTS)
    tokens[1, 2] = 0  # id 0 is "!" (without a word end) in the OpenAI BPE: a real token inside the text
    return images, tokens


def assert_same_outputs(ours, reference, model_cfg):
    images, tokens = inputs(model_cfg)
    with torch.no_grad(), reference_mode():
        for encode, inputs_ in (("encode_image", images), ("encode_text", tokens)):  # CoCa's default is True
            assert_relative_close(getattr(ours, encode)(inputs_, normalize=False),
                                  getattr(reference, encode)(inputs_, normalize=False))
        assert float(ours.logit_scale) == float(reference.logit_scale)
        if "multimodal_cfg" in model_cfg:
            assert_relative_close(ours(images, tokens)["logits"], reference(images, tokens)["logits"])


def contiguous_state(model):
    return {name: tensor.detach().clone().contiguous() for name, tensor in model.state_dict().items()}


def write_hub(directory, model_cfg, state, weights="open_clip_model.safetensors"):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg,
                                                                 "preprocess_cfg": PREPROCESS_CFG}))
    if weights.endswith(".safetensors"):
        save_file(state, str(directory / weights))
    else:
        torch.save(state, directory / weights)
    return directory


@pytest.mark.parametrize("name", list(CASES))
def test_hub_directory_of_every_architecture_family_loads_exactly(name, references, tmp_path):
    reference = references(name)
    directory = write_hub(tmp_path / name, CASES[name], contiguous_state(reference))
    loaded = load_model(directory)
    assert loaded.format == "open_clip_hub" and not loaded.model.training
    assert_same_outputs(loaded.model, reference, CASES[name])
    preprocess = loaded.model.config.preprocess
    assert (preprocess.mean, preprocess.interpolation) == ((0.5, 0.5, 0.5), "bilinear")
    context = CASES[name]["text_cfg"]["context_length"]
    assert torch.equal(loaded.tokenizer(TEXTS), open_clip().get_tokenizer("ViT-B-32", context_length=context)(TEXTS))


@pytest.mark.parametrize("weights", ["open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin"])
def test_hub_directory_weights_names_and_a_weights_file_given_directly(weights, references, tmp_path):
    reference = references("vit")
    directory = write_hub(tmp_path / "hub", CASES["vit"], contiguous_state(reference), weights)
    for path in (directory, directory / weights, f"local-dir:{directory}"):
        assert_same_outputs(load_model(path).model, reference, CASES["vit"])


@pytest.mark.parametrize("prefix", ["", "module."])
def test_epoch_checkpoint_needs_and_uses_the_named_architecture(prefix, references, tmp_path):
    reference = references("quickgelu")
    state = {prefix + name: tensor for name, tensor in contiguous_state(reference).items()}
    path = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "name": "run", "state_dict": state, "optimizer": {}}, path)
    with pytest.raises(UserError, match=r"open_clip's layout.*needs its architecture: load\(path, model="):
        load_model(path)
    (tmp_path / "architecture").mkdir()
    config_file = tmp_path / "architecture" / "open_clip_config.json"
    config_file.write_text(json.dumps({"model_cfg": CASES["quickgelu"]}))
    loaded = load_model(path, model=config_file)
    assert loaded.format == "open_clip_checkpoint"
    assert_same_outputs(loaded.model, reference, CASES["quickgelu"])
    with pytest.raises(StateDictMismatchError, match=r"epoch_3.pt does not match the architecture: 240 missing: "
                                                     r".*61 mis-shaped: visual.class_embedding is \[128\], "
                                                     r"expected \[768\]"):
        load_model(path, model="ViT-B-32-quickgelu")


def openai_state(reference):
    """OpenAI's storage of `reference`: conv / linear / attention / projection weights in fp16.
    The reference's own weights are rounded to fp16 in place first, so both sides hold one set of
    numbers (cliplab upcasts to fp32)."""
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.copy_(parameter.half().float())
    stored = copy.deepcopy(reference)
    open_clip().model.convert_weights_to_lp(stored, dtype=torch.float16)
    return contiguous_state(stored)


def openai_extras(model_cfg):
    return {"input_resolution": torch.tensor(model_cfg["vision_cfg"]["image_size"]),
            "context_length": torch.tensor(model_cfg["text_cfg"]["context_length"]),
            "vocab_size": torch.tensor(model_cfg["text_cfg"]["vocab_size"])}


def test_openai_torchscript_archive_and_plain_state_dict_load_exactly(references, tmp_path):
    model_cfg = CASES["quickgelu"]
    reference = copy.deepcopy(references("quickgelu"))
    plain = tmp_path / "plain.pt"
    torch.save({**openai_state(reference), **openai_extras(model_cfg)}, plain)
    traced_source = copy.deepcopy(reference)
    for key, value in openai_extras(model_cfg).items():
        traced_source.__dict__.pop(key, None)  # open_clip keeps two of them as plain ints
        traced_source.register_buffer(key, value)
    # OpenAI's archives keep the causal mask out of the state dict (a traced buffer would be in it).
    traced_source.__dict__["attn_mask"] = traced_source._buffers.pop("attn_mask")
    archive = tmp_path / "ViT-tiny.pt"
    with torch.no_grad(), reference_mode():
        torch.jit.trace(traced_source, inputs(model_cfg), check_trace=False).half().save(str(archive))
    for path in (plain, archive):
        loaded = load_model(path)
        assert loaded.format == "openai"
        config = loaded.model.config
        assert (config.vision.activation, config.text.pool, config.text.padding_mask) == ("quick_gelu", "argmax", "none")
        assert all(parameter.dtype == torch.float32 for parameter in loaded.model.parameters())
        assert_same_outputs(loaded.model, reference, model_cfg)


def test_real_size_vit_b_32_hub_directory(tmp_path):
    torch.manual_seed(0)
    reference = open_clip().create_model("ViT-B-32").eval()
    directory = write_hub(tmp_path / "hub", open_clip().get_model_config("ViT-B-32"), contiguous_state(reference))
    loaded = load_model(directory)
    images, tokens = torch.randn(1, 3, 224, 224), openai_bpe_tokenizer()(["a photo of a cat!"])
    with torch.no_grad(), reference_mode():
        assert_relative_close(loaded.model.encode_image(images), reference.encode_image(images))
        assert_relative_close(loaded.model.encode_text(tokens), reference.encode_text(tokens))


def test_real_size_rn50_openai_state_dict_architecture_from_shapes(tmp_path):
    torch.manual_seed(0)
    library = open_clip()
    reference = randomize_(library.create_model("RN50-quickgelu"), seed=3, only_batch_norms=True)
    model_cfg = library.get_model_config("RN50-quickgelu")
    path = tmp_path / "RN50.pt"
    torch.save({**openai_state(reference), **openai_extras(model_cfg)}, path)
    loaded = load_model(path)
    config = loaded.model.config
    assert (config.vision.kind, config.vision.layers, config.vision.heads, config.embed_dim) == (
        "resnet", [3, 4, 6, 3], 32, 1024)
    images, tokens = torch.randn(1, 3, 224, 224), openai_bpe_tokenizer()(["a photo of a dog!"])
    with torch.no_grad(), reference_mode():
        assert_relative_close(loaded.model.encode_image(images), reference.encode_image(images))
        assert_relative_close(loaded.model.encode_text(tokens), reference.encode_text(tokens))


def test_a_state_dict_that_does_not_match_lists_missing_unexpected_and_misshaped(references, tmp_path):
    state = contiguous_state(references("vit"))
    del state["ln_final.weight"], state["visual.proj"]
    state["visual.extra"] = torch.zeros(3)
    state["token_embedding.weight"] = torch.zeros(10, 48)
    with pytest.raises(StateDictMismatchError) as caught:
        load_model(write_hub(tmp_path / "hub", CASES["vit"], state))
    message = str(caught.value)
    assert "2 missing: ln_final.weight [48], visual.proj [64, 32]" in message
    assert "1 unexpected: visual.extra [3]" in message
    assert "1 mis-shaped: token_embedding.weight is [10, 48], expected [49408, 48]" in message


def test_unrecognised_files_say_what_they_hold_and_list_the_formats(tmp_path):
    other = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(2), "decoder.bias": torch.zeros(1)}, other)
    with pytest.raises(UserError, match=r"an unknown layout, keys 'encoder.weight', 'decoder.bias' "
                                        r"\(2 entries\).*accepted: \(1\) a cliplab bundle.*\(6\) the prefixes"):
        load_model(other)
    not_torch = tmp_path / "weights.bin"
    not_torch.write_bytes(b"\x80 not a pickle")
    with pytest.raises(UserError, match=r"weights.bin: not a PyTorch checkpoint that loads with weights_only=True"):
        load_model(not_torch)
    empty_hub = tmp_path / "hub"
    empty_hub.mkdir()
    (empty_hub / "open_clip_config.json").write_text(json.dumps({"model_cfg": CASES["vit"]}))
    with pytest.raises(UserError, match=r"has open_clip_config.json but no weights: expected one of "
                                        r"open_clip_model.safetensors, open_clip_pytorch_model.safetensors"):
        load_model(empty_hub)
    with pytest.raises(UserError, match="local-dir: must name an existing directory"):
        load_model(f"local-dir:{tmp_path / 'absent'}")


def test_hf_hub_prefix_without_network_fails_with_a_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    with pytest.raises(UserError, match=r"hf-hub:laion/absent-repo: Hugging Face repository laion/absent-repo "
                                        r"is not in the cache .*hf_home/hub and could not be downloaded"):
        load_model("hf-hub:laion/absent-repo")
    with pytest.raises(UserError, match="hf-hub:no-slash: expected a Hugging Face repository id org/name"):
        load_model("hf-hub:no-slash")


def test_a_named_architecture_must_agree_with_a_self_describing_directory(references, tmp_path):
    directory = write_hub(tmp_path / "hub", CASES["vit"], contiguous_state(references("vit")))
    with pytest.raises(UserError, match=r"model='ViT-B-16' differs from the architecture .*hub holds "
                                        r"\(text.heads, text.layers, text.width, vision.heads, vision.image_size\)"):
        load_model(directory, model="ViT-B-16")
