from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from cliplab.data.tokenizer_base import MissingTokenError
from cliplab.data.tokenizer_openai import openai_bpe_tokenizer
from cliplab.models import create_model
from cliplab.objectives import ObjectivesConfig, UnsupportedObjectiveError, build_objectives

TOKENIZER = SimpleNamespace(pad_id=0, sot_id=1, eot_id=2, mask_id=3, unk_id=4, special_ids={0, 1, 2, 3, 4},
                            vocab_size=64)


def small_model():
    torch.manual_seed(0)
    return create_model("tiny-vit", embed_dim=16, vision={"width": 32, "layers": 1, "heads": 2, "patch_size": 7},
                        text={"width": 32, "layers": 1, "heads": 2, "vocab_size": 64, "context_length": 12})


def config(**sections):
    return ObjectivesConfig.from_dict(sections)


def test_mlm_needs_a_mask_id_and_a_vocabulary_inside_the_text_tower():
    outside = SimpleNamespace(**{**vars(TOKENIZER), "mask_id": 64, "vocab_size": 65})
    with pytest.raises(UnsupportedObjectiveError, match="'mlm' is not supported by a clip model: the tokenizer's "
                                                        "mask_id 64 is outside the text tower's vocabulary of 64 ids"):
        build_objectives(config(mlm={"enabled": True}), small_model(), outside)
    larger = SimpleNamespace(**{**vars(TOKENIZER), "vocab_size": 65})
    with pytest.raises(UnsupportedObjectiveError, match=r"'mlm'.*vocabulary \(65\) is larger than the text tower's \(64\)"):
        build_objectives(config(mlm={"enabled": True}), small_model(), larger)


def test_heads_are_sized_from_the_models_typed_config():
    model = small_model()
    objectives = build_objectives(config(mlm={"enabled": True}, simclr={"enabled": True, "hidden_dim": 8,
                                                                        "projection_dim": 4}), model, TOKENIZER)
    assert objectives.term_names == ["mlm_loss", "simclr_loss"]
    assert objectives.protected_ids == (0, 1, 2, 3, 4) and objectives.vocab_size == TOKENIZER.vocab_size
    linears = {name: module for name, module in objectives.named_modules() if isinstance(module, nn.Linear)}
    assert any(layer.in_features == model.config.embed_dim for layer in linears.values())  # SimCLR
    assert any(layer.in_features == model.config.text.width for layer in linears.values())  # MLM


def test_a_tokenizer_without_a_mask_token_serves_every_term_but_mlm():
    torch.manual_seed(0)
    model = create_model("tiny-vit", embed_dim=16, vision={"width": 32, "layers": 1, "heads": 2, "patch_size": 7},
                         text={"width": 32, "layers": 1, "heads": 2, "vocab_size": 49408, "context_length": 12})
    tokenizer = openai_bpe_tokenizer(12)  # open_clip's: pad 0, sot 49406, eot 49407, no mask token
    objectives = build_objectives(config(simclr={"enabled": True, "hidden_dim": 8, "projection_dim": 4}), model,
                                  tokenizer)
    assert objectives.mask_id is None and objectives.protected_ids == (0, 49406, 49407)
    with pytest.raises(MissingTokenError, match="the openai_bpe tokenizer has no mask token"):
        build_objectives(config(mlm={"enabled": True}), model, tokenizer)


def test_generator_is_seeded_with_the_configured_seed_plus_rank():
    objectives = build_objectives(config(sim_reg={"enabled": True}, augment={"seed": 11}), small_model(), TOKENIZER)
    assert torch.equal(objectives.get_rng_state(), torch.Generator().manual_seed(11).get_state())


def test_config_type_is_checked():
    with pytest.raises(ValueError, match="config must be an ObjectivesConfig"):
        build_objectives({"mlm": {"enabled": True}}, small_model(), TOKENIZER)


def small_model_of_kind(name):
    torch.manual_seed(0)
    return create_model(name, embed_dim=16, vision={"width": 16}, text={"width": 32, "layers": 1, "heads": 2})


@pytest.mark.parametrize("model_name, kind, what_is_lost", [
    ("tiny-coca", "coca", "captioning term would be dropped"),
    ("tiny-siglip", "siglip", "logit_bias without a gradient"),
])
@pytest.mark.parametrize("contrastive, term", [
    ({"decoupled": True}, "contrastive.decoupled"),
    ({"extra_latent_projection": True}, "contrastive.extra_latent_projection"),
    ({"decoupled": True, "extra_latent_projection": True}, "contrastive.decoupled"),
])
def test_objectives_replacing_the_loss_are_refused_for_coca_and_siglip_models(model_name, kind, what_is_lost,
                                                                             contrastive, term):
    model = small_model_of_kind(model_name)
    assert model.config.kind == kind
    with pytest.raises(UnsupportedObjectiveError, match=f"'{term}' is not supported by a {kind} model: .*{what_is_lost}"):
        build_objectives(config(contrastive=contrastive), model, TOKENIZER)


@pytest.mark.parametrize("model_name", ["tiny-coca", "tiny-siglip"])
def test_added_terms_stay_available_for_coca_and_siglip_models(model_name):
    objectives = build_objectives(config(sim_reg={"enabled": True}, multiview={"enabled": True}),
                                  small_model_of_kind(model_name), TOKENIZER)
    assert not objectives.replaces_contrastive_loss
    assert objectives.term_names == ["multiview_loss", "sim_reg_loss"]
