from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn

from cliplab.models import create_model
from cliplab.objectives import ObjectivesConfig, UnsupportedObjectiveError, build_objectives

TOKENIZER = SimpleNamespace(pad_id=0, sot_id=1, eot_id=2, mask_id=3, unk_id=4, special_ids={0, 1, 2, 3, 4},
                            vocab_size=64)


def small_model():
    torch.manual_seed(0)
    return create_model("tiny-vit", embed_dim=16, vision={"width": 32, "layers": 1, "heads": 2, "patch_size": 7},
                        text={"width": 32, "layers": 1, "heads": 2, "vocab_size": 64, "context_length": 12})


class PooledOnlyModel(nn.Module):
    """A CLIP-like model with pooled encoders only: no per-token latents, no text tower."""

    embed_dim = 8

    def __init__(self):
        super().__init__()
        self.image_encoder = nn.Linear(12, 8)
        self.text_encoder = nn.Embedding(64, 8)

    def encode_image(self, images, normalize=False):
        return self.image_encoder(images.flatten(1)[:, :12])

    def encode_text(self, tokens, normalize=False):
        return self.text_encoder(tokens).mean(dim=1)


def config(**sections):
    return ObjectivesConfig.from_dict(sections)


def test_filip_without_token_latents_fails_at_start_up_naming_term_and_model():
    with pytest.raises(UnsupportedObjectiveError, match=r"'filip' .* model PooledOnlyModel: it has no "
                                                        r"model.encode_image_tokens\(\)"):
        build_objectives(config(filip={"enabled": True}), PooledOnlyModel(), TOKENIZER)
    model = small_model()
    model.supports_token_latents = False
    with pytest.raises(UnsupportedObjectiveError, match="'filip'.*no per-token latents"):
        build_objectives(config(filip={"enabled": True}), model, TOKENIZER)


def test_mlm_needs_a_text_tower_and_a_mask_id_inside_its_vocabulary():
    with pytest.raises(UnsupportedObjectiveError, match=r"'mlm' .*text_tower.forward_tokens\(\)"):
        build_objectives(config(mlm={"enabled": True}), PooledOnlyModel(), TOKENIZER)
    outside = SimpleNamespace(**{**vars(TOKENIZER), "mask_id": 64, "vocab_size": 65})
    with pytest.raises(UnsupportedObjectiveError, match="'mlm'.*mask_id 64 is outside"):
        build_objectives(config(mlm={"enabled": True}), small_model(), outside)
    without_mask = SimpleNamespace(**{**vars(TOKENIZER), "mask_id": None})
    with pytest.raises(UnsupportedObjectiveError, match="'mlm'.*no mask_id"):
        build_objectives(config(mlm={"enabled": True}), small_model(), without_mask)


def test_pooled_terms_work_on_a_model_with_pooled_encoders_only():
    objectives = build_objectives(config(simclr={"enabled": True, "hidden_dim": 8, "projection_dim": 4},
                                         sim_reg={"enabled": True}), PooledOnlyModel(), TOKENIZER)
    assert objectives.term_names == ["simclr_loss", "sim_reg_loss"]


def test_generator_is_seeded_with_the_configured_seed_plus_rank_and_wrappers_are_unwrapped():
    wrapped = SimpleNamespace(module=small_model())
    objectives = build_objectives(config(sim_reg={"enabled": True}, augment={"seed": 11}), wrapped, TOKENIZER)
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
    with pytest.raises(UnsupportedObjectiveError, match=f"'{term}' is not supported .* {kind} model .*{what_is_lost}"):
        build_objectives(config(contrastive=contrastive), model, TOKENIZER)


@pytest.mark.parametrize("model_name", ["tiny-coca", "tiny-siglip"])
def test_added_terms_stay_available_for_coca_and_siglip_models(model_name):
    objectives = build_objectives(config(sim_reg={"enabled": True}, multiview={"enabled": True}),
                                  small_model_of_kind(model_name), TOKENIZER)
    assert not objectives.replaces_contrastive_loss
    assert objectives.term_names == ["multiview_loss", "sim_reg_loss"]
