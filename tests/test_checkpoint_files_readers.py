"""Every entry point that reads a run's checkpoint, given a hostile or a damaged one (RELIABILITY 15
and 17): `cliplab.load`, `cliplab eval`, `classify`, `embed`, `export --format bundle` and
`train --pretrained`.

- A code-running pickle in a file the reader reads (DCP's `.metadata`, a tensor stored in a shard
  file), its manifest recomputed (which anyone can do): nothing runs, and the reader fails in one
  line naming the file (exit status 2, no traceback).
- A code-running pickle in a file readers never read (`train_state.pt`, an optimiser value in a
  shard file) and a flipped byte in the newest checkpoint (its weights file or a shard file): the
  reader skips the damaged checkpoint with one line, as resume does, and reads the one before; its
  pickles run nothing.
Before: the pickle in `.metadata` ran on all six paths and the load went on; the flipped byte was
read silently. The same files given to resume are in tests/test_train_checkpointing_manager.py (single file)
and tests/test_train_checkpointing_dcp.py (FSDP2, 2 ranks).
"""

from __future__ import annotations

import json
import re
import shutil
import sys

import numpy as np
import pytest
import torch
import torch.distributed.checkpoint as dcp

import cliplab
from cliplab.cli import main
from cliplab.data.tokenizer import Tokenizer
from cliplab.errors import UserError
from cliplab.file_names import DCP_SHARDS_DIR
from cliplab.models import create_model
from cliplab.pretrained.cliplab_bundle import save_description
from cliplab.train.checkpointing.atomic_files import save_torch
from cliplab.train.checkpointing.manager import CheckpointManager
from cliplab.train.checkpointing.payload import rng_state, training_payload
from cliplab.train.state import TrainState
from data_fixtures import make_manifest, write_png
from hostile_files import replace_with_pickle, republish, store_instead

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
OVERRIDES = {"embed_dim": 16, "vision.width": 16, "text.width": 16, "text.heads": 2, "text.layers": 1,
             "text.context_length": 12, "text.vocab_size": 300}
CAPTIONS = ["a photo of a bag", "a photo of a boot", "caption 1", "caption 2"]


def _model(step):
    torch.manual_seed(step)
    model = create_model("tiny", **OVERRIDES)
    with torch.no_grad():
        model.logit_scale.fill_(float(step))
    return model


def _single_file_run(root, tokenizer):
    manager = CheckpointManager(root / "checkpoints", keep=2)
    for step in (1, 2):
        model = _model(step)
        manager.save(model=model, tokenizer=tokenizer, optimizer=torch.optim.AdamW(model.parameters()), scaler=None,
                     state=TrainState(step=step), config={"loop": {"seed": 0}})
    return root


def _dcp_run(root, tokenizer):
    """Step directories as an FSDP2 run writes them (here from one process): shards, description,
    train_state.pt, then the manifest and `latest` (`CheckpointManager.publish`)."""
    manager = CheckpointManager(root / "checkpoints", keep=2)
    for step in (1, 2):
        model = _model(step)
        staging = manager.stage(step)
        state = {name: (value.reshape(1) if value.dim() == 0 else value).clone()
                 for name, value in model.state_dict().items()}
        groups = [{"lr": 0.001, "betas": (0.9, 0.98), "params": sorted(state)}]
        dcp.save({"model": state, "optimizer": {"param_groups": groups}}, checkpoint_id=staging / DCP_SHARDS_DIR,
                 no_dist=True)
        save_description(model.config, tokenizer, staging)
        save_torch(training_payload(state=TrainState(step=step), scaler=None, rng_states=[rng_state()],
                                    config={"loop": {"seed": 0}}), staging / "train_state.pt")
        manager.publish(staging, step)
    return root


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    root = tmp_path_factory.mktemp("readers")
    tokenizer = Tokenizer.train(CAPTIONS * 4, vocab_size=300, context_length=12)
    images = root / "images"
    for label, value in (("bag", 40), ("boot", 200)):
        (images / label).mkdir(parents=True)
        write_png(images / label / f"{label}.png", value, size=16)
    return {"single": _single_file_run(root / "single", tokenizer), "dcp": _dcp_run(root / "dcp", tokenizer),
            "images": images, "manifest": make_manifest(root / "data", 8)}


def _copy_with(run, tmp_path, step, edits):
    """A copy of `run` whose step directory `step` had `edits` applied (each: step dir -> None), its
    manifest recomputed as an attacker would, so that it verifies."""
    copy = shutil.copytree(run, tmp_path / f"{run.name}-copy")
    directory = copy / "checkpoints" / f"step_{step:07d}"
    for edit in edits:
        edit(directory)
    republish(directory)
    return copy


def _pickle_file(name, marker):
    return lambda directory: replace_with_pickle(directory / name, marker)


def _stored_value(fqn, marker):
    return lambda directory: store_instead(directory / DCP_SHARDS_DIR, fqn, marker)


def _flip_byte(name):
    def damage(directory):
        data = bytearray((directory / name).read_bytes())
        data[-5] ^= 0x01
        (directory / name).write_bytes(bytes(data))
    return damage


def _run(entry, path, setting, tmp_path, capsys):
    """(exit status, stdout, stderr, what was read) of entry point `entry` reading `path`."""
    out = tmp_path / f"out-{entry}"
    image = setting["images"] / "bag" / "bag.png"
    argv = {
        "eval": ["eval", path, "--classes-from-folders", setting["images"], "--out", out.with_suffix(".json")],
        "classify": ["classify", path, image, "--labels", "bag,boot", "--out", out.with_suffix(".json")],
        "embed": ["embed", path, "--images", setting["images"], "--out", out.with_suffix(".npy")],
        "export": ["export", path, "--format", "bundle", "--out", out],
        "train --pretrained": ["train", "--pretrained", path, "--logs", tmp_path / "logs", "--name", "ft",
                               "--dataset-type", "csv", "--train-data", setting["manifest"], "--max-steps", 1,
                               "--batch-size", 4, "--workers", 0, "--threads", 1, "--warmup", 1, "--no-progress-bar",
                               "--no-tensorboard", "--set", "eval.eval_at_end=false"],
    }
    capsys.readouterr()
    if entry == "cliplab.load":
        try:
            loaded = cliplab.load_model(path)
            status, read = 0, (loaded.path, loaded.model.logit_scale.item())
        except UserError as error:
            print(f"cliplab.load: error: {error}", file=sys.stderr)
            status, read = 2, None
    else:
        threads = torch.get_num_threads()
        try:
            status = main([str(arg) for arg in argv[entry]])
        finally:
            torch.set_num_threads(threads)
        read = None
    captured = capsys.readouterr()
    if status == 0 and entry != "cliplab.load":
        read = _what_was_read(entry, out, captured.out)
    return status, captured.out, captured.err, read


def _what_was_read(entry, out, printed):
    if entry in ("eval", "classify"):
        results = json.loads(out.with_suffix(".json").read_text())
        return results["checkpoint"] if entry == "eval" else [row["probabilities"] for row in results]
    if entry == "embed":
        return np.load(out.with_suffix(".npy")).tolist()
    if entry == "export":
        return cliplab.load(out)[0].logit_scale.item()
    return re.search(r"^model: .* from the pretrained checkpoint (\S+) \(bundle\)", printed, re.MULTILINE).group(1)


ENTRY_POINTS = ["cliplab.load", "eval", "classify", "embed", "export", "train --pretrained"]


def _assert_one_line_naming(status, err, name, entry):
    assert status == 2 and "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1 and name in lines[0], err
    assert lines[0].startswith(f"cliplab {entry.split()[0]}: error: " if entry != "cliplab.load"
                               else "cliplab.load: error: ")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("poison", [".metadata", "stored tensor"])
def test_a_code_running_pickle_in_a_file_the_reader_reads_runs_nothing_and_is_one_line(setting, tmp_path, capsys,
                                                                                         entry, poison):
    marker = tmp_path / "ran"
    edit = (_pickle_file(f"{DCP_SHARDS_DIR}/.metadata", marker) if poison == ".metadata"
            else _stored_value("model.logit_scale", marker))
    run = _copy_with(setting["dcp"], tmp_path, 2, [edit])
    status, _, err, _ = _run(entry, run, setting, tmp_path, capsys)
    assert not marker.exists()
    _assert_one_line_naming(status, err, str(run / "checkpoints" / "step_0000002" / DCP_SHARDS_DIR /
                                             (".metadata" if poison == ".metadata" else "__0_0.distcp")), entry)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("kind", ["single", "dcp"])
def test_a_damaged_newest_checkpoint_is_skipped_with_a_line_and_unread_pickles_run_nothing(setting, tmp_path, capsys,
                                                                                          entry, kind):
    marker = tmp_path / "ran"
    unread = [_pickle_file("train_state.pt", marker)]
    if kind == "dcp":
        unread.append(_stored_value("optimizer.param_groups.0.lr", marker))
    run = _copy_with(setting[kind], tmp_path, 1, unread)
    damaged = run / "checkpoints" / "step_0000002"
    _flip_byte("model.safetensors" if kind == "single" else f"{DCP_SHARDS_DIR}/__0_0.distcp")(damaged)
    status, _, err, read = _run(entry, run, setting, tmp_path, capsys)
    assert status == 0 and not marker.exists(), err
    assert f"skipping checkpoint {damaged}: it has " in err and "another SHA-256 than its manifest's" in err
    step_1 = run / "checkpoints" / "step_0000001"
    expected = {"cliplab.load": (step_1, 1.0), "eval": str(step_1), "export": 1.0, "train --pretrained": str(step_1)}
    if entry in expected:
        assert read == expected[entry]
    else:  # the same output as the step read named explicitly
        assert read == _run(entry, step_1, setting, tmp_path / "reference", capsys)[3]


@pytest.mark.parametrize("name", ["config.json", "cliplab_tokenizer.json", "tokenizer.json", "model.safetensors",
                                  f"{DCP_SHARDS_DIR}/.metadata", f"{DCP_SHARDS_DIR}/__0_0.distcp", "train_state.pt"])
def test_a_code_running_pickle_in_any_file_of_a_checkpoint_runs_nothing_when_loaded(setting, tmp_path, name):
    marker = tmp_path / "ran"
    kind = "dcp" if name.startswith(DCP_SHARDS_DIR) else "single"
    run = _copy_with(setting[kind], tmp_path, 2, [_pickle_file(name, marker)])
    if name == "train_state.pt":  # never read by a reader of the model
        assert cliplab.load_model(run).path == run / "checkpoints" / "step_0000002"
    else:
        with pytest.raises(UserError) as refused:
            cliplab.load(run)
        assert name.split("/")[-1] in str(refused.value) and "\n" not in str(refused.value)
    assert not marker.exists()
