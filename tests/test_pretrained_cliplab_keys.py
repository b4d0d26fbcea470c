"""pretrained/cliplab_keys: `torch.save(model.state_dict())` of a cliplab model is a checkpoint format,
read with the architecture named (`cliplab.load(path, model=NAME)`, `--model NAME --pretrained path`)."""

import pytest
import torch
from safetensors.torch import save_file

import cliplab
from cliplab.errors import UserError
from cliplab.pretrained.cliplab_keys import is_cliplab_layout


@pytest.fixture(scope="module")
def saved_state(tmp_path_factory):
    """(model, its state dict saved with torch.save, and with safetensors)."""
    torch.manual_seed(5)
    model = cliplab.create_model("tiny-vit")
    directory = tmp_path_factory.mktemp("state")
    torch.save(model.state_dict(), directory / "model.pt")
    save_file({name: tensor.contiguous() for name, tensor in model.state_dict().items()},
              str(directory / "model.safetensors"))
    return model, directory


def _assert_same_weights(model, reference):
    state = reference.state_dict()
    assert model.state_dict().keys() == state.keys()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[name]), name


@pytest.mark.parametrize("file_name", ["model.pt", "model.safetensors"])
def test_a_saved_state_dict_loads_with_its_architecture_named(saved_state, file_name):
    model, directory = saved_state
    loaded = cliplab.load_model(directory / file_name, model="tiny-vit", require_tokenizer=False)
    assert loaded.format == "cliplab_state_dict" and loaded.tokenizer is None and not loaded.model.training
    assert loaded.model.config == model.config
    _assert_same_weights(loaded.model, model)


def test_the_architecture_may_be_a_model_json(saved_state, tmp_path):
    model, directory = saved_state
    config_path = tmp_path / "config.json"
    config_path.write_text(__import__("json").dumps(model.config.to_dict()))
    loaded = cliplab.load_model(directory / "model.pt", model=str(config_path), require_tokenizer=False)
    _assert_same_weights(loaded.model, model)


def test_without_the_architecture_or_with_another_it_says_what_to_pass(saved_state):
    _, directory = saved_state
    with pytest.raises(UserError, match=r"model.pt: a state dict in cliplab's layout, keys 'logit_scale', .*; it "
                                        r"needs the architecture it was saved from: load\(path, model='tiny-vit'\)"):
        cliplab.load(directory / "model.pt")
    with pytest.raises(UserError, match=r"no tokenizer cliplab reads \(a state dict holds no tokenizer and cliplab's "
                                        r"architectures train theirs"):
        cliplab.load(directory / "model.pt", model="tiny-vit")
    with pytest.raises(UserError, match=r"model.pt does not match the architecture: 15 missing: vision_tower.stem.0."
                                        r"weight \[32, 3, 3, 3\], .*; 53 unexpected: vision_tower.class_embedding"):
        cliplab.load_model(directory / "model.pt", model="tiny", require_tokenizer=False)  # a conv tower, not a ViT


def test_the_trainer_starts_from_a_saved_state_dict(saved_state):
    from cliplab.train.config import ModelSetupConfig
    from cliplab.train.setup.model import build_training_model

    model, directory = saved_state
    built = build_training_model(ModelSetupConfig(name="tiny-vit", pretrained=str(directory / "model.pt")),
                                 torch.device("cpu"))
    _assert_same_weights(built.model, model)
    assert built.tokenizer is None  # the run trains or reads its own (--tokenizer)


def test_the_layout_is_told_apart_from_the_foreign_ones():
    assert is_cliplab_layout(["logit_scale", "vision_tower.conv.weight"])
    assert not is_cliplab_layout(["logit_scale", "visual.conv1.weight", "transformer.resblocks.0.ln_1.weight"])
    assert not is_cliplab_layout(["vision_model.embeddings.patch_embedding.weight"])
