"""A sharded (DCP) step directory read in one process: `cliplab.load` and `cliplab export --format
bundle` give the model that was saved, with 0-d logit_scale / logit_bias and bundle names.

The DCP directory here is written by one process (`no_dist=True`) in the layout an FSDP2 run
writes (`model.<name>`, a held 0-d parameter stored as [1], optimiser entries beside it); FSDP2
runs that write it with 2 ranks are in tests/test_train_checkpointing_dcp.py.
"""

import json
import struct

import pytest
import torch
import torch.distributed.checkpoint as dcp

import cliplab
from cliplab.file_names import DCP_SHARDS_DIR
from cliplab.model_io import CheckpointNotFoundError, load_model
from cliplab.pretrained.cliplab_bundle import save_description
from cliplab.checkpoint_files.manifest import MANIFEST_FILE, build_manifest
from cliplab.cli import main
from cliplab.data.tokenizer import Tokenizer
from cliplab.errors import UserError
from cliplab.models import create_model
from cliplab.pretrained.dcp_reader import DcpModelReader
from reference_libraries import randomize_

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")  # the one-process writer here
CAPTIONS = ["a photo of a cat", "a photo of a dog", "two birds"]


def _tiny(kind):
    overrides = {"vision.width": 16, "text.width": 16, "text.heads": 2, "text.layers": 1, "text.vocab_size": 300}
    torch.manual_seed(0)
    return randomize_(create_model("tiny" if kind == "clip" else "tiny-siglip", **overrides), 3).eval()


def _write_step_dir(directory, model, tokenizer):
    """A step directory as an FSDP2 run writes it: config, tokenizer, DCP shards (held scalars [1]),
    the manifest last."""
    save_description(model.config, tokenizer, directory)
    state = {name: (value.reshape(1) if value.dim() == 0 else value).clone()
             for name, value in model.state_dict().items()}
    moments = {name: {"exp_avg": torch.zeros_like(value)} for name, value in state.items()}
    dcp.save({"model": state, "optimizer": {"state": moments}}, checkpoint_id=directory / DCP_SHARDS_DIR, no_dist=True)
    step = int(directory.name.removeprefix("step_"))
    (directory / MANIFEST_FILE).write_text(build_manifest(directory, step=step, run_id=None).to_json())
    return directory


def _outputs(model, tokenizer):
    torch.manual_seed(5)
    images = torch.randn(3, 3, model.config.vision.image_size, model.config.vision.image_size)
    with torch.no_grad():
        return model(images, tokenizer(CAPTIONS))


def _safetensors_shapes(path):
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    return {name: entry["shape"] for name, entry in header.items() if name != "__metadata__"}


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_load_and_export_of_a_dcp_step_directory_give_the_saved_model(kind, tmp_path, capsys):
    model = _tiny(kind)
    tokenizer = Tokenizer.train(CAPTIONS, vocab_size=300, context_length=model.config.text.context_length)
    step = _write_step_dir(tmp_path / "run" / "checkpoints" / "step_0000004", model, tokenizer)
    (step.parent / "latest").write_text(step.name + "\n")
    expected = _outputs(model, tokenizer)

    loaded = load_model(tmp_path / "run")  # a run directory resolves through checkpoints/latest
    assert loaded.path == step and loaded.format == "bundle"
    assert all(torch.equal(a, b) for a, b in zip(_outputs(loaded.model, loaded.tokenizer), expected))

    out = tmp_path / "exported"
    assert main(["export", str(step), "--format", "bundle", "--out", str(out)]) == 0
    assert f"exported {step} (bundle) as bundle to {out}" in capsys.readouterr().out
    scalars = {"logit_scale": []} if kind == "clip" else {"logit_scale": [], "logit_bias": []}
    shapes = _safetensors_shapes(out / "model.safetensors")
    assert {name: shapes[name] for name in scalars} == scalars and shapes.keys() == model.state_dict().keys()
    exported, _, exported_tokenizer = cliplab.load(out)
    assert all(torch.equal(a, b) for a, b in zip(_outputs(exported, exported_tokenizer), expected))


def test_incomplete_or_foreign_dcp_directories_are_refused_by_path(tmp_path):
    model = _tiny("clip")
    tokenizer = Tokenizer.train(CAPTIONS, vocab_size=300, context_length=model.config.text.context_length)
    step = _write_step_dir(tmp_path / "step_0000001", model, tokenizer)
    (step / DCP_SHARDS_DIR / ".metadata").unlink()  # a writer that did not finish
    with pytest.raises(CheckpointNotFoundError, match="step_0000001 is not a checkpoint"):
        load_model(step)

    foreign = tmp_path / "foreign"
    dcp.save({"weights": {"w": torch.ones(2)}}, checkpoint_id=foreign, no_dist=True)
    with pytest.raises(UserError, match=f"{foreign}: the DCP directory holds no model.. tensors"):
        DcpModelReader(foreign)
