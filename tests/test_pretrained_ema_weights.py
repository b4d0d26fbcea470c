"""A checkpoint's EMA weights read over its model: the averages in place, the rest the model's;
averages of tensors the model lacks, and checkpoints without any, refused in one line."""

import pytest
import torch
from safetensors.torch import save_file

from cliplab.errors import UserError
from cliplab.pretrained.ema_weights import EMA_WEIGHTS_FILE, ema_reader
from cliplab.pretrained.weight_files import SafetensorsReader


def _checkpoint(directory, averages):
    directory.mkdir()
    save_file({"a": torch.zeros(2), "b": torch.ones(3)}, str(directory / "model.safetensors"))
    if averages is not None:
        save_file(averages, str(directory / EMA_WEIGHTS_FILE))
    return SafetensorsReader(directory / "model.safetensors")


def test_the_averages_replace_the_models_tensors_and_nothing_else(tmp_path):
    base = _checkpoint(tmp_path / "run", {"b": torch.full((3,), 0.5)})
    reader = ema_reader(tmp_path / "run", base)
    assert reader.shapes.keys() == {"a", "b"}
    assert torch.equal(reader.read("a"), torch.zeros(2)) and torch.equal(reader.read("b"), torch.full((3,), 0.5))


@pytest.mark.parametrize("averages, message", [
    (None, "holds no EMA weights: only checkpoints of a run trained with --ema-decay"),
    ({"c": torch.zeros(1)}, r"EMA tensors \['c'\] are not tensors of the checkpoint's model"),
    ({"b": torch.zeros(4)}, r"EMA tensors \['b'\] are not tensors of the checkpoint's model"),
])
def test_what_is_not_an_ema_of_the_model_is_refused(tmp_path, averages, message):
    base = _checkpoint(tmp_path / "run", averages)
    with pytest.raises(UserError, match=message):
        ema_reader(tmp_path / "run", base)
