"""Registry sweep: every registered config builds; tiny ones run forward/backward with every
parameter receiving a gradient; the ViT-B shapes match open_clip's parameter counts."""

import json

import pytest
import torch
import torch.nn.functional as F

from cliplab.errors import UserError
from cliplab.models import CLIP, CoCa, ModelConfig, create_model, get_model_config, list_models, register_model
from cliplab.models import registry
from cliplab.suggestions import closest_names

TINY_NAMES = [name for name in list_models() if name.startswith("tiny")]


def test_builtin_configs_are_registered():
    assert {"tiny", "tiny-siglip", "tiny-coca", "tiny-vit", "ViT-B-32", "ViT-B-16"} <= set(list_models())


def test_an_unknown_name_names_the_five_closest_and_points_to_list_models():
    with pytest.raises(ValueError) as raised:
        create_model("tinny")
    # The fifth closest depends on which tower families are registered (RN50, then convnext_tiny).
    fifth = closest_names("tinny", list_models())[4]
    assert str(raised.value) == ("unknown model 'tinny': not a registered name or a JSON file; closest names: tiny, "
                                 f"tiny-vit, tiny-coca, tiny-siglip, {fifth} (cliplab.list_models() lists all "
                                 f"{len(list_models())})")
    assert isinstance(raised.value, UserError)
    with pytest.raises(ValueError, match=r"closest names: ViT-B-32, "):
        create_model("vit-b32")  # case does not count


def contrastive_and_caption_loss(output):
    logits = output["logit_scale"] * output["image_features"] @ output["text_features"].T
    if "logit_bias" in output:
        signs = 2 * torch.eye(logits.shape[0]) - 1
        loss = -F.logsigmoid(signs * (logits + output["logit_bias"])).mean()
    else:
        labels = torch.arange(logits.shape[0])
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    if "logits" in output:
        loss = loss + F.cross_entropy(output["logits"].transpose(1, 2), output["labels"], ignore_index=0)
    return loss


@pytest.mark.parametrize("name", TINY_NAMES)
def test_every_parameter_receives_a_gradient(name):
    torch.manual_seed(0)
    model = create_model(name, output_dict=True)
    config = model.config
    size, length = config.vision.image_size, config.text.context_length
    images = torch.randn(3, 3, size, size)
    tokens = torch.randint(5, config.text.vocab_size, (3, length))
    tokens[:, 0], tokens[:, 6], tokens[:, 7:] = 1, 2, 0
    output = model(images, tokens)
    assert output["image_features"].shape == (3, config.embed_dim)
    assert output["text_features"].shape == (3, config.embed_dim)
    if config.kind == "coca":
        assert output["logits"].shape == (3, length - 1, config.text.vocab_size)
        assert torch.equal(output["labels"], tokens[:, 1:])
    loss = contrastive_and_caption_loss(output)
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or p.grad.abs().sum() == 0]
    assert missing == []


@pytest.mark.parametrize("name, parameters", [("ViT-B-32", 151_277_313), ("ViT-B-16", 149_620_737)])
def test_vit_b_matches_open_clip_parameter_count(name, parameters):
    with torch.device("meta"):
        model = create_model(name, output_dict=True)
    assert sum(p.numel() for p in model.parameters()) == parameters
    assert model.vision_tower.position_embedding.shape == ((224 // int(name[-2:])) ** 2 + 1, 768)
    assert model.text_tower.token_embedding.weight.shape == (49408, 512)
    assert model.image_projection.weight.shape == (512, 768)
    with torch.device("meta"):
        output = model(torch.empty(2, 3, 224, 224), torch.zeros(2, 77, dtype=torch.long))
    assert output["image_features"].shape == (2, 512) and output["text_features"].shape == (2, 512)


def test_overrides_reach_the_model():
    model = create_model("tiny", embed_dim=32, **{"text.layers": 1}, vision={"width": 64})
    assert model.config.embed_dim == 32 and model.text_projection.weight.shape == (32, 128)
    assert len(model.text_tower.transformer.blocks) == 1
    assert model.vision_tower.width == 64 and model.config.vision.layers == 2
    with pytest.raises(ValueError, match=r"unknown config keys \['vision.depth'\]"):
        create_model("tiny", **{"vision.depth": 3})


def test_create_from_json_path_config_and_registered_name(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_registered_configs", {})
    values = get_model_config("tiny-coca", embed_dim=8).to_dict()
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(values))
    assert isinstance(create_model(str(path)), CoCa)
    assert create_model(ModelConfig.from_dict(values)).config.embed_dim == 8
    register_model("test-registered", values)
    assert "test-registered" in list_models()
    assert type(create_model("test-registered", kind="clip", decoder=None)) is CLIP
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        create_model(str(bad))


def test_a_saved_bundles_config_json_builds_the_same_model(tmp_path):
    from cliplab.model_io import save
    from cliplab.data.tokenizer import Tokenizer

    model = create_model("tiny", embed_dim=8)
    tokenizer = Tokenizer.train(["a photo of a shoe", "a bag"], vocab_size=300, context_length=8)
    directory = save(model, tokenizer, tmp_path / "bundle")
    rebuilt = create_model(directory / "config.json")
    assert rebuilt.config == model.config
