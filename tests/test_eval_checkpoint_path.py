import json
import shutil
from pathlib import Path

import pytest
import torch

from cliplab.bundle import load as load_bundle
from cliplab.eval.checkpoint_path import CheckpointNotFoundError, load, load_checkpoint, resolve_checkpoint
from eval_fixtures import trained_run  # noqa: F401  (session fixture)

FORMAT_1_BUNDLE = Path(__file__).resolve().parent / "fixtures" / "bundle_format_1"


def _fake_bundle(directory, config=None):
    directory.mkdir(parents=True)
    (directory / "model.safetensors").write_bytes(b"")
    (directory / "config.json").write_text(json.dumps(config if config is not None else {"kind": "clip"}))
    return directory


def test_bundle_and_step_directories_resolve_to_themselves(tmp_path):
    bundle = _fake_bundle(tmp_path / "bundle")
    step = _fake_bundle(tmp_path / "run" / "checkpoints" / "step_0000007")
    (step / "train_state.pt").write_bytes(b"")
    assert resolve_checkpoint(bundle) == bundle
    assert resolve_checkpoint(step) == step


def test_run_directory_resolves_through_latest(tmp_path):
    run = tmp_path / "run"
    _fake_bundle(run / "checkpoints" / "step_0000001")
    newest = _fake_bundle(run / "checkpoints" / "step_0000002")
    (run / "checkpoints" / "latest").write_text("step_0000002\n")
    assert resolve_checkpoint(run) == newest
    assert resolve_checkpoint(run / "checkpoints") == newest


@pytest.mark.parametrize(
    "layout, message",
    [("missing", "does not exist"), ("file", "is a file"), ("empty_dir", "is not a checkpoint"),
     ("run_without_latest", "no checkpoints/latest"), ("dangling_latest", "not a complete checkpoint"),
     ("empty_latest", "is empty")],
)
def test_paths_that_are_not_checkpoints_fail_clearly(tmp_path, layout, message):
    path = tmp_path / "target"
    if layout == "file":
        path.write_text("x")
    elif layout == "empty_dir":
        path.mkdir()
    elif layout == "run_without_latest":
        (path / "checkpoints" / "step_0000001").mkdir(parents=True)
    elif layout in ("dangling_latest", "empty_latest"):
        (path / "checkpoints").mkdir(parents=True)
        (path / "checkpoints" / "latest").write_text("step_0000009" if layout == "dangling_latest" else "  \n")
    with pytest.raises(CheckpointNotFoundError, match=message) as caught:
        resolve_checkpoint(path)
    assert str(path) in str(caught.value)


def test_load_reads_a_committed_format_1_bundle_through_a_run_directory(tmp_path):
    step = shutil.copytree(FORMAT_1_BUNDLE, tmp_path / "run" / "checkpoints" / "step_0000003")
    (tmp_path / "run" / "checkpoints" / "latest").write_text("step_0000003\n")
    model, preprocess, tokenizer = load(tmp_path / "run")
    reference, _, reference_tokenizer = load_bundle(FORMAT_1_BUNDLE)
    assert not model.training and model.config == reference.config
    for name, tensor in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert torch.equal(tokenizer(["a bag"]), reference_tokenizer(["a bag"]))
    assert load_checkpoint(tmp_path / "run").path == step


def test_a_directory_with_weights_and_config_but_no_tokenizer_names_the_missing_file(tmp_path):
    bundle = shutil.copytree(FORMAT_1_BUNDLE, tmp_path / "bundle")
    (bundle / "tokenizer.json").unlink()
    with pytest.raises(ValueError, match="is not a cliplab bundle: missing tokenizer.json"):
        load(bundle)


def test_all_three_layouts_load_the_same_weights(trained_run):
    models = [load_checkpoint(path).model for path in (trained_run.bundle, trained_run.step_dir, trained_run.run_dir)]
    for model in models:
        assert not model.training
    reference = models[0].state_dict()
    for model in models[1:]:
        for name, tensor in model.state_dict().items():
            assert torch.equal(tensor, reference[name]), name
