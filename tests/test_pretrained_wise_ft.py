"""WiSE-FT: theta = (1 - alpha) zero_shot + alpha fine_tuned on every floating tensor, checked in
closed form; architectures must match; `cliplab wise-ft` writes a loadable bundle."""

import pytest
import torch

from cliplab.model_io import load_model, save
from cliplab.cli import main
from cliplab.data.tokenizer import Tokenizer
from cliplab.errors import UserError
from cliplab.models import create_model
from cliplab.pretrained.key_maps import StateDictMismatchError
from cliplab.pretrained.wise_ft import interpolate_state_dicts, wise_ft

OVERRIDES = {"embed_dim": 16, "vision.width": 16, "text.width": 16, "text.heads": 2, "text.context_length": 12,
             "text.vocab_size": 300}


def filled(value, **overrides):
    """A tiny model whose every floating tensor holds `value` (so the mix has a closed form)."""
    model = create_model("tiny", **{**OVERRIDES, **overrides}).eval()
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.fill_(value)
    return model


@pytest.mark.parametrize("alpha, expected", [(0.0, 1.0), (0.25, 1.5), (0.5, 2.0), (1.0, 3.0)])
def test_every_floating_tensor_is_the_closed_form_mix(alpha, expected):
    mixed = wise_ft(filled(1.0), filled(3.0), alpha)
    for name, tensor in mixed.state_dict().items():
        assert torch.equal(tensor, torch.full_like(tensor, expected)), name


def test_integer_tensors_come_from_the_fine_tuned_model_and_inputs_are_untouched():
    zero_shot = {"weight": torch.tensor([0.0, 4.0]), "steps": torch.tensor(3)}
    fine_tuned = {"weight": torch.tensor([2.0, 8.0]), "steps": torch.tensor(7)}
    mixed = interpolate_state_dicts(zero_shot, fine_tuned, 0.5)
    assert torch.equal(mixed["weight"], torch.tensor([1.0, 6.0])) and int(mixed["steps"]) == 7
    assert torch.equal(zero_shot["weight"], torch.tensor([0.0, 4.0]))


def test_mismatched_models_and_alphas_are_refused_by_name():
    with pytest.raises(UserError, match=r"different architectures \(they differ in embed_dim\)"):
        wise_ft(filled(1.0, embed_dim=8), filled(1.0), 0.5)
    with pytest.raises(StateDictMismatchError, match=r"1 missing: extra \[2\]"):
        interpolate_state_dicts({}, {"extra": torch.zeros(2)}, 0.5)
    with pytest.raises(UserError, match=r"--alpha must be a number in \[0, 1\], got 1.5"):
        interpolate_state_dicts({}, {}, 1.5)


def test_command_writes_a_bundle_of_the_mix(tmp_path, capsys):
    tokenizer = Tokenizer.train(["a photo of a bag", "a dress"] * 5, vocab_size=300, context_length=12)
    save(filled(1.0), tokenizer, tmp_path / "zero_shot")
    save(filled(3.0), tokenizer, tmp_path / "fine_tuned")
    arguments = ["wise-ft", str(tmp_path / "zero_shot"), str(tmp_path / "fine_tuned"), "--alpha", "0.25",
                 "--out", str(tmp_path / "mixed")]
    assert main(arguments) == 0
    assert "wrote" in capsys.readouterr().out
    loaded = load_model(tmp_path / "mixed")
    assert torch.equal(loaded.model.logit_scale, torch.tensor(1.5))
    assert torch.equal(loaded.tokenizer(["a bag"]), tokenizer(["a bag"]))
    capsys.readouterr()
    assert main(arguments) == 2
    assert "the directory exists and is not empty" in capsys.readouterr().err
    assert main([*arguments, "--force"]) == 0
