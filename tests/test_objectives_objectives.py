from types import SimpleNamespace

import pytest
import torch

from cliplab.losses.xclip.dcl import global_contrastive_loss
from cliplab.losses.xclip.filip import filip_loss
from cliplab.losses.xclip.mlm import mask_tokens, mlm_loss
from cliplab.losses.xclip.multiview import multiview_contrastive_loss
from cliplab.losses.xclip.sim_reg import similarity_regularization_loss
from cliplab.losses.xclip.simclr import simclr_loss
from cliplab.losses.xclip.simsiam import simsiam_loss
from cliplab.models import create_model
from cliplab.objectives import ObjectivesConfig, build_objectives
from cliplab.objectives.augment import drop_tokens, random_resized_crop_and_flip

VOCAB, LENGTH = 64, 12
TOKENIZER = SimpleNamespace(pad_id=0, sot_id=1, eot_id=2, mask_id=3, unk_id=4, special_ids={0, 1, 2, 3, 4},
                            vocab_size=VOCAB)
SMALL_HEADS = {"simsiam": {"hidden_dim": 32, "projection_dim": 16, "predictor_hidden_dim": 8},
               "simclr": {"hidden_dim": 32, "projection_dim": 16}}
ALL_TERMS = {
    "contrastive": {"decoupled": True, "extra_latent_projection": True},
    "filip": {"enabled": True, "tile_size": 2},
    "mlm": {"enabled": True},
    "simsiam": {"enabled": True, **SMALL_HEADS["simsiam"]},
    "simclr": {"enabled": True, **SMALL_HEADS["simclr"]},
    "multiview": {"enabled": True},
    "sim_reg": {"enabled": True},
}


@pytest.fixture(autouse=True)
def one_thread():
    """Two cores shared by several jobs: more threads than one only add contention here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return create_model("tiny-vit", output_dict=True, embed_dim=16,
                        vision={"width": 32, "layers": 1, "heads": 2, "patch_size": 7},
                        text={"width": 32, "layers": 1, "heads": 2, "vocab_size": VOCAB, "context_length": LENGTH})


def tiny_batch(batch_size=4, seed=1):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, 28, 28, generator=generator)
    tokens = torch.zeros(batch_size, LENGTH, dtype=torch.long)
    lengths = torch.randint(2, LENGTH - 1, (batch_size,), generator=generator)
    for row, length in enumerate(lengths.tolist()):
        tokens[row, 0] = TOKENIZER.sot_id
        tokens[row, 1:length] = torch.randint(5, VOCAB, (length - 1,), generator=generator)
        tokens[row, length] = TOKENIZER.eot_id
    return {"images": images, "tokens": tokens}


def build(sections, model):
    return build_objectives(ObjectivesConfig.from_dict(sections), model, TOKENIZER)


def test_each_term_equals_its_loss_function_on_the_same_inputs():
    model, batch = tiny_model(), tiny_batch()
    objectives = build(ALL_TERMS, model)
    replay = torch.Generator()
    replay.set_state(objectives.get_rng_state())
    images, tokens = batch["images"], batch["tokens"]
    with torch.no_grad():
        outputs = model(images, tokens)
        terms = objectives(model, batch, outputs)
        assert list(terms) == ["dcl_loss", "filip_loss", "mlm_loss", "simsiam_loss", "simclr_loss",
                               "multiview_loss", "sim_reg_loss"]

        image_features, text_features, scale = outputs["image_features"], outputs["text_features"], outputs[
            "logit_scale"]
        image_extra, text_extra = objectives.extra_projections(image_features, text_features)
        expected = {"dcl_loss": global_contrastive_loss(image_features, text_features, scale, decoupled=True,
                                                        image_features_i2t=image_extra,
                                                        text_features_i2t=text_extra)}
        text_tokens, text_mask = model.encode_text_tokens(tokens)
        expected["filip_loss"] = filip_loss(model.encode_image_tokens(images), text_tokens, text_mask, scale,
                                            decoupled=True, tile_size=2)
        masked = mask_tokens(tokens, protected_ids=(0, 1, 2, 3, 4), mask_id=3, vocab_size=VOCAB, generator=replay)
        hidden = model.text_tower.forward_tokens(masked.input_tokens)
        expected["mlm_loss"] = mlm_loss(objectives.mlm_head(hidden[masked.selected]),
                                        tokens[masked.selected])
        views = [model.encode_image(random_resized_crop_and_flip(images, crop_scale=(0.4, 1.0),
                                                                 crop_ratio=(3 / 4, 4 / 3), flip_probability=0.5,
                                                                 generator=replay))
                 for _ in range(2)]
        (z1, p1), (z2, p2) = objectives.simsiam_head(views[0]), objectives.simsiam_head(views[1])
        expected["simsiam_loss"] = simsiam_loss(p1, p2, z1, z2)
        expected["simclr_loss"] = simclr_loss(objectives.simclr_head(views[0]), objectives.simclr_head(views[1]),
                                              temperature=0.1)
        augmented_text = model.encode_text(drop_tokens(tokens, protected_ids=(0, 1, 2, 3, 4), pad_id=0,
                                                       drop_probability=0.1, generator=replay))
        expected["multiview_loss"] = multiview_contrastive_loss(
            [image_features, views[0]], [text_features, augmented_text], scale, decoupled=True,
            image_views_i2t=[image_extra, objectives.extra_projections.image_projection(views[0])],
            text_views_i2t=[text_extra, objectives.extra_projections.text_projection(augmented_text)])
        expected["sim_reg_loss"] = similarity_regularization_loss(image_features, text_features)
    for name, value in terms.items():
        assert value.dim() == 0 and value.dtype == torch.float32
        torch.testing.assert_close(value, expected[name], rtol=1e-5, atol=1e-6, msg=name)


def _gradient_owners(model, objectives):
    """group name -> did any parameter of it receive a non-zero gradient."""
    groups = {
        "vision_tower": model.vision_tower.parameters(), "text_tower": model.text_tower.parameters(),
        "image_projection": model.image_projection.parameters(),
        "text_projection": model.text_projection.parameters(), "logit_scale": [model.logit_scale],
        "objectives": objectives.parameters(),
    }
    return {name: any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in params)
            for name, params in groups.items()}


@pytest.mark.parametrize("sections, reached", [
    ({"mlm": {"enabled": True, "mask_probability": 0.5}}, {"text_tower", "objectives"}),
    ({"simsiam": {"enabled": True, **SMALL_HEADS["simsiam"]}}, {"vision_tower", "image_projection", "objectives"}),
    ({"simclr": {"enabled": True, **SMALL_HEADS["simclr"]}}, {"vision_tower", "image_projection", "objectives"}),
    ({"filip": {"enabled": True}}, {"vision_tower", "text_tower", "image_projection", "text_projection",
                                    "logit_scale"}),
    ({"contrastive": {"extra_latent_projection": True}}, {"vision_tower", "text_tower", "image_projection",
                                                          "text_projection", "logit_scale", "objectives"}),
    ({"multiview": {"enabled": True, "augment_images": False}}, {"vision_tower", "text_tower", "image_projection",
                                                                 "text_projection", "logit_scale"}),
    ({"sim_reg": {"enabled": True}}, {"vision_tower", "text_tower", "image_projection", "text_projection"}),
])
def test_gradients_reach_exactly_the_parameters_each_term_uses(sections, reached):
    model, batch = tiny_model(), tiny_batch()
    objectives = build(sections, model)
    terms = objectives(model, batch, model(batch["images"], batch["tokens"]))
    objectives.weighted_sum(terms).backward()
    owners = _gradient_owners(model, objectives)
    assert {name for name, got in owners.items() if got} == reached
    assert all(p.grad is not None for p in objectives.parameters())


def test_mlm_gradient_leaves_the_tower_only_at_selected_positions(monkeypatch):
    model, batch = tiny_model(), tiny_batch()
    objectives = build({"mlm": {"enabled": True, "mask_probability": 0.4}}, model)
    captured = {}
    forward_tokens = model.text_tower.forward_tokens

    def capturing_forward_tokens(tokens):
        hidden = forward_tokens(tokens)
        hidden.retain_grad()
        captured["hidden"], captured["tokens"] = hidden, tokens
        return hidden

    monkeypatch.setattr(model.text_tower, "forward_tokens", capturing_forward_tokens)
    replay = torch.Generator()
    replay.set_state(objectives.get_rng_state())
    terms = objectives(model, batch, model(batch["images"], batch["tokens"]))
    terms["mlm_loss"].backward()
    selected = mask_tokens(batch["tokens"], protected_ids=(0, 1, 2, 3, 4), mask_id=3, vocab_size=VOCAB,
                           mask_probability=0.4, generator=replay).selected
    assert selected.any()
    position_gradient = captured["hidden"].grad.abs().sum(dim=-1)
    assert (position_gradient[~selected] == 0).all() and (position_gradient[selected] > 0).all()


def test_heads_exist_only_for_enabled_terms():
    model = tiny_model()
    assert list(build({"sim_reg": {"enabled": True}, "filip": {"enabled": True}}, model).parameters()) == []
    only_mlm = build({"mlm": {"enabled": True}}, model)
    assert {name.split(".")[0] for name, _ in only_mlm.named_parameters()} == {"mlm_head"}
    everything = build(ALL_TERMS, model)
    assert {name.split(".")[0] for name, _ in everything.named_parameters()} == {
        "extra_projections", "mlm_head", "simsiam_head", "simclr_head"}


def test_weights_names_and_weighted_sum():
    model, batch = tiny_model(), tiny_batch()
    objectives = build({"sim_reg": {"enabled": True, "weight": 0.3}, "multiview": {"enabled": True},
                        "contrastive": {"decoupled": True, "weight": 0.9}}, model)
    assert objectives.replaces_contrastive_loss
    assert objectives.weights == {"dcl_loss": 0.9, "multiview_loss": 0.1, "sim_reg_loss": 0.3}
    terms = objectives(model, batch, model(batch["images"], batch["tokens"]))
    expected = 0.9 * terms["dcl_loss"] + 0.1 * terms["multiview_loss"] + 0.3 * terms["sim_reg_loss"]
    torch.testing.assert_close(objectives.weighted_sum(terms), expected)
    with pytest.raises(ValueError, match="missing"):
        objectives.weighted_sum({"dcl_loss": terms["dcl_loss"]})
    plain = build({"sim_reg": {"enabled": True}}, model)
    assert not plain.replaces_contrastive_loss and plain.contrastive_term_name is None
    assert build({"contrastive": {"extra_latent_projection": True}}, model).term_names == ["clip_loss"]


def test_rng_state_replays_the_same_views_and_masks():
    model, batch = tiny_model(), tiny_batch()
    objectives = build({"mlm": {"enabled": True}, "simclr": {"enabled": True, **SMALL_HEADS["simclr"]}}, model)
    state = objectives.get_rng_state()
    with torch.no_grad():
        outputs = model(batch["images"], batch["tokens"])
        first = objectives(model, batch, outputs)
        different = objectives(model, batch, outputs)
        objectives.set_rng_state(state)
        replayed = objectives(model, batch, outputs)
    assert all(torch.equal(first[name], replayed[name]) for name in first)
    assert not torch.equal(first["simclr_loss"], different["simclr_loss"])


def test_bad_batch_and_outputs_name_the_argument():
    model, batch = tiny_model(), tiny_batch()
    objectives = build({"sim_reg": {"enabled": True}}, model)
    outputs = model(batch["images"], batch["tokens"])
    with pytest.raises(ValueError, match="batch"):
        objectives(model, (batch["images"], batch["tokens"]), outputs)
    with pytest.raises(ValueError, match="model_outputs is missing"):
        objectives(model, batch, {"image_features": outputs["image_features"]})


def test_short_run_with_every_term_lowers_the_total_loss():
    model, batch = tiny_model(seed=3), tiny_batch(batch_size=8, seed=4)
    objectives = build(ALL_TERMS, model)
    optimizer = torch.optim.AdamW(list(model.parameters()) + list(objectives.parameters()), lr=3e-3)
    totals = []
    for _ in range(25):
        terms = objectives(model, batch, model(batch["images"], batch["tokens"]))
        total = objectives.weighted_sum(terms)
        assert all(torch.isfinite(value) for value in terms.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        totals.append(total.item())
    assert sum(totals[-5:]) / 5 < 0.8 * sum(totals[:5]) / 5, totals


DETERMINISTIC_TERMS = {
    "contrastive": {"decoupled": True, "extra_latent_projection": True},
    "filip": {"enabled": True, "tile_size": 2},
    "multiview": {"enabled": True, "augment_images": False},
    "augment": {"token_drop_probability": 0.0},
    "sim_reg": {"enabled": True},
}


def _terms_and_gradients(rows):
    torch.set_num_threads(1)
    model, batch = tiny_model(seed=5), tiny_batch(batch_size=5, seed=6)
    batch = {key: value[rows] for key, value in batch.items()}
    objectives = build(DETERMINISTIC_TERMS, model)
    terms = objectives(model, batch, model(batch["images"], batch["tokens"]))
    objectives.weighted_sum(terms).backward()
    parameters = list(model.named_parameters()) + list(objectives.named_parameters())
    return ({name: value.detach() for name, value in terms.items()},
            {name: parameter.grad.clone() for name, parameter in parameters})


def _worker_terms_and_gradients(rank, world_size):
    return _terms_and_gradients(slice(0, 3) if rank == 0 else slice(3, 5))


def test_objectives_across_two_processes_equal_the_whole_batch():
    from cliplab.distributed.launch import run_on_workers

    whole_terms, whole_gradients = _terms_and_gradients(slice(0, 5))
    per_rank = run_on_workers(_worker_terms_and_gradients, 2, timeout_s=120)
    for terms, _ in per_rank:
        for name, value in terms.items():
            torch.testing.assert_close(value, whole_terms[name], rtol=1e-5, atol=1e-6, msg=name)
    # DDP averages the ranks' gradients; the average is the whole batch's gradient
    for name, gradient in whole_gradients.items():
        averaged = (per_rank[0][1][name] + per_rank[1][1][name]) / 2
        scale = float(gradient.abs().max())
        torch.testing.assert_close(averaged, gradient, rtol=1e-5, atol=1e-5 * scale, msg=name)
