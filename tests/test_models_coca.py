"""CoCa: caption logits/labels contract, causality of the decoder, generation."""

import pytest
import torch

from cliplab.models import create_model

OVERRIDES = {"embed_dim": 16, "vision.width": 16, "text.width": 16, "text.heads": 2, "decoder.heads": 2,
             "text.context_length": 8, "text.vocab_size": 30}
SOT, EOT = 1, 2


def tiny_coca(**overrides):
    torch.manual_seed(0)
    return create_model("tiny-coca", **{**OVERRIDES, **overrides}).eval()


def tokens():
    return torch.tensor([[SOT, 10, 11, 12, EOT, 0, 0, 0], [SOT, 13, EOT, 0, 0, 0, 0, 0]])


def test_forward_returns_next_token_logits_and_labels():
    model = tiny_coca()
    images = torch.randn(2, 3, 28, 28)
    output = model(images, tokens())
    assert sorted(output) == ["image_features", "labels", "logit_scale", "logits", "text_features"]
    assert output["logits"].shape == (2, 7, 30) and output["logits"].dtype == torch.float32
    assert output["labels"].tolist() == tokens()[:, 1:].tolist()
    torch.testing.assert_close(output["image_features"], model.encode_image(images, normalize=True))
    torch.testing.assert_close(output["text_features"], model.encode_text(tokens(), normalize=True))


def test_logits_at_a_position_ignore_later_tokens():
    model = tiny_coca()
    images = torch.randn(2, 3, 28, 28)
    changed = tokens().clone()
    changed[0, 3] = 20
    logits, logits_changed = model(images, tokens())["logits"], model(images, changed)["logits"]
    torch.testing.assert_close(logits[:, :3], logits_changed[:, :3])
    assert not torch.allclose(logits[0, 3], logits_changed[0, 3])


def scripted_decoder(vocab_size, eot_step_per_row):
    """A decoder stand-in: row r emits token 7 until step eot_step_per_row[r], then end-of-text."""
    def forward(text_hidden, image_tokens):
        batch, length = text_hidden.shape[:2]
        logits = torch.zeros(batch, length, vocab_size)
        for row in range(batch):
            logits[row, -1, EOT if length >= eot_step_per_row[row] else 7] = 1.0
        return logits
    return forward


def test_generate_greedy_stops_at_end_of_text_and_pads_finished_rows(monkeypatch):
    model = tiny_coca()
    monkeypatch.setattr(model.decoder, "forward", scripted_decoder(30, [1, 3, 100]))
    generated = model.generate(torch.randn(3, 3, 28, 28), sot_id=SOT, eot_id=EOT, max_length=6)
    assert generated.tolist() == [[SOT, EOT, 0, 0, 0, 0],
                                  [SOT, 7, 7, EOT, 0, 0],
                                  [SOT, 7, 7, 7, 7, 7]]
    monkeypatch.setattr(model.decoder, "forward", scripted_decoder(30, [2, 1, 1]))
    generated = model.generate(torch.randn(3, 3, 28, 28), sot_id=SOT, eot_id=EOT, max_length=6)
    assert generated.tolist() == [[SOT, 7, EOT], [SOT, EOT, 0], [SOT, EOT, 0]], "stops once all rows ended"
    assert model.training is False


def test_generate_never_emits_start_or_padding_and_top_k_is_reproducible():
    model = tiny_coca().train()
    with torch.no_grad():
        model.decoder.lm_head.weight.zero_()
        model.decoder.lm_head.weight[[SOT, 0]] = 100.0
    images = torch.randn(2, 3, 28, 28)
    greedy = model.generate(images, sot_id=SOT, eot_id=EOT, max_length=6)
    assert not torch.isin(greedy[:, 1:], torch.tensor([SOT, 0])).any()
    sample = lambda seed: model.generate(images, sot_id=SOT, eot_id=EOT, max_length=8, strategy="top_k", top_k=5,
                                         temperature=0.7, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(sample(3), sample(3))
    assert model.training is True, "generate restores the training mode"


def test_generate_rows_after_end_of_text_are_padding():
    model = tiny_coca()
    with torch.no_grad():
        model.decoder.lm_head.weight.zero_()
    images = torch.randn(4, 3, 28, 28)
    generated = model.generate(images, sot_id=SOT, eot_id=EOT, strategy="top_k", top_k=30,
                               generator=torch.Generator().manual_seed(0))
    for row in generated.tolist():
        if EOT in row:
            assert set(row[row.index(EOT) + 1:]) <= {0}


def test_generate_validates_arguments():
    model = tiny_coca()
    images = torch.randn(1, 3, 28, 28)
    with pytest.raises(ValueError, match="needs a tokenizer or both sot_id and eot_id"):
        model.generate(images)
    with pytest.raises(ValueError, match=r"max_length must be an int in \[2, context_length=8\]"):
        model.generate(images, sot_id=SOT, eot_id=EOT, max_length=9)
    with pytest.raises(ValueError, match="strategy must be one of"):
        model.generate(images, sot_id=SOT, eot_id=EOT, strategy="beam")
    with pytest.raises(ValueError, match="temperature must be a positive number"):
        model.generate(images, sot_id=SOT, eot_id=EOT, strategy="top_k", temperature=0)


def test_output_feeds_coca_loss_directly():
    from cliplab.losses import CoCaLoss

    model = tiny_coca().train()
    output = model(torch.randn(2, 3, 28, 28), tokens())
    clip_loss, caption_loss = CoCaLoss(caption_loss_weight=2.0, clip_loss_weight=1.0, pad_id=0)(**output)
    (clip_loss + caption_loss).backward()
    assert torch.isfinite(clip_loss) and torch.isfinite(caption_loss)
    assert model.decoder.lm_head.weight.grad.abs().sum() > 0


def test_encoders_normalise_by_default_as_open_clips_coca_does_and_clip_does_not():
    # Before: cliplab's CoCa inherited CLIP's normalize=False; a migrated CoCa user got unnormalised features.
    import inspect

    from cliplab.models.clip import CLIP
    from cliplab.models.coca import CoCa
    from reference_libraries import open_clip

    library = open_clip()
    for ours, theirs in ((CLIP, library.CLIP), (CLIP, library.CustomTextCLIP), (CoCa, library.CoCa)):
        for method in ("encode_image", "encode_text"):
            default = inspect.signature(getattr(theirs, method)).parameters["normalize"].default
            assert inspect.signature(getattr(ours, method)).parameters["normalize"].default == default, (ours, method)
    model = tiny_coca()
    images = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(model.encode_image(images).norm(dim=-1), torch.ones(2))
    unnormalised = model.encode_image(images, normalize=False)
    assert torch.equal(model.encode_image(images), torch.nn.functional.normalize(unnormalised, dim=-1))
    assert torch.equal(model.encode_text(tokens()), model.encode_text(tokens(), normalize=True))
    assert not torch.allclose(model.encode_text(tokens(), normalize=False).norm(dim=-1), torch.ones(2))


def test_the_encoders_defaults_give_open_clips_coca_outputs():
    """open_clip's CoCa and cliplab's with its weights (key maps): the encoders called with their
    defaults agree (relative 1e-5: float reassociation between the libraries)."""
    from cliplab.models import build_model
    from cliplab.models.open_clip_config import config_from_open_clip
    from cliplab.pretrained.key_maps import to_cliplab
    from cliplab.pretrained.open_clip_keys import open_clip_rules
    from reference_libraries import assert_relative_close, open_clip_model, randomize_, reference_mode
    from test_pretrained_loaders import CASES, inputs

    theirs = randomize_(open_clip_model(CASES["coca"]), seed=3)
    config = config_from_open_clip(CASES["coca"])
    ours = build_model(config)
    ours.load_state_dict(to_cliplab(theirs.state_dict(), ours.state_dict(), open_clip_rules(config, "text."), "coca"))
    images, text = inputs(CASES["coca"])
    with torch.no_grad(), reference_mode():
        assert_relative_close(ours.eval().encode_image(images), theirs.encode_image(images))
        assert_relative_close(ours.encode_text(text), theirs.encode_text(text))
        torch.testing.assert_close(ours.encode_text(text).norm(dim=-1), torch.ones(len(text)))
