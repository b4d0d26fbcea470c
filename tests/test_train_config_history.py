"""Resume drift (RELIABILITY item 18): a resume that changes what is trained is refused, one line per
run naming every change, unless --allow-config-change names it; the first attempt's config.json
stays and every change is recorded with its step in config_history.jsonl."""

import json

import pytest

from cliplab.cli import main
from cliplab.train import train
from cliplab.train.config import CheckpointConfig, ConfigError, TrainConfig
from cliplab.train.config.history import (FREE_ON_RESUME, ConfigChangeError, config_changes, config_in_force,
                                          is_free_on_resume)
from cliplab.train.config.io import config_to_dict

from train_helpers import SMALL_MODEL, small_config


def test_changes_are_listed_key_by_key_and_a_key_an_older_version_lacks_is_its_default():
    reference = config_to_dict(TrainConfig())
    del reference["optim"]["min_lr"]  # as if written before the key existed
    config = TrainConfig()
    config.optim.lr, config.model.overrides, config.logging.log_every_n_steps = 1e-3, {"embed_dim": 8}, 1
    assert config_changes(reference, config) == {
        "model.overrides": (reference["model"]["overrides"], {"embed_dim": 8}), "optim.lr": (0.002, 0.001),
        "logging.log_every_n_steps": (10, 1)}


def test_the_table_of_free_keys_names_real_keys_and_covers_sections():
    from cliplab.train.config import names_config_key

    assert all(names_config_key(TrainConfig, entry.key) and entry.why for entry in FREE_ON_RESUME)
    assert is_free_on_resume("logging.name") and is_free_on_resume("data.workers")
    assert not is_free_on_resume("data.train_data") and not is_free_on_resume("loop.max_steps")
    with pytest.raises(ConfigError, match=r"'checkpoint.allow_config_change' must name config keys or sections"):
        TrainConfig(checkpoint=CheckpointConfig(allow_config_change=("optim.lrr",)))


def _argv(logs, *flags):
    model = "{" + ", ".join(f"{k}: {v}" for k, v in SMALL_MODEL.items()) + "}"
    return ["train", "--logs", str(logs), "--name", "run", "--max-steps", "4", "--batch-size", "8",
            "--train-num-samples", "64", "--workers", "0", "--threads", "1", "--no-progress-bar", "--no-tensorboard",
            "--set", f"model.overrides={model}", "--set", "eval.eval_at_end=false", *flags]


def test_a_resume_with_other_hyper_parameters_is_refused_unless_allowed_and_is_recorded(tmp_path, capsys):
    # Before: accepted silently, config.json overwritten, the schedule changed mid-run.
    assert main(_argv(tmp_path, "--save-every-steps", "2", "--max-steps", "2")) == 0
    run_dir = tmp_path / "run"
    first_config = (run_dir / "config.json").read_bytes()
    changed = ["--max-steps", "2", "--lr", "0.001", "--wd", "0.2", "--warmup", "3", "--seed", "5", "--epochs", "7",
               "--log-every-n-steps", "1", "--workers", "1", "--resume", "latest"]
    capsys.readouterr()

    assert main(_argv(tmp_path, *changed)) == 2
    err = capsys.readouterr().err
    checkpoint = run_dir / "checkpoints" / "step_0000002"
    assert err == (f"cliplab train: error: resuming {checkpoint} (step 2) with settings that change training, "
                   f"against {run_dir / 'config.json'}: loop.epochs 5 -> 7, loop.seed 0 -> 5, optim.lr 0.002 -> 0.001, "
                   "optim.wd 0.1 -> 0.2, optim.warmup 100 -> 3; resume with the settings it was trained with, or "
                   "name them in --allow-config-change loop.epochs,loop.seed,optim.lr,optim.wd,optim.warmup to "
                   "change them from step 2 on\n")
    assert (run_dir / "config.json").read_bytes() == first_config

    allowed = ["--allow-config-change", "loop,optim"]  # sections cover their keys
    assert main(_argv(tmp_path, *changed, *allowed, "--max-steps", "4")) == 0
    assert ("config changed from step 2 on, as --allow-config-change allows: loop.epochs 5 -> 7, loop.max_steps 2 -> 4, "
            "loop.seed 0 -> 5, optim.lr 0.002 -> 0.001, optim.wd 0.1 -> 0.2, optim.warmup 100 -> 3 (and 5 settings "
            f"that do not affect training); recorded in {run_dir / 'config_history.jsonl'}\n") in capsys.readouterr().out
    assert (run_dir / "config.json").read_bytes() == first_config
    (record,) = [json.loads(line) for line in (run_dir / "config_history.jsonl").read_text().splitlines()]
    assert record["step"] == 2 and record["resumed_from"] == str(checkpoint)
    assert record["changes"]["optim.lr"] == [0.002, 0.001] and record["changes"]["data.workers"] == [0, 1]
    assert record["config"]["optim"]["lr"] == 0.001 and record["config"]["checkpoint"]["allow_config_change"] == [
        "loop", "optim"]
    assert config_in_force(run_dir, 1)[0] == json.loads(first_config)
    assert config_in_force(run_dir, 4) == (record["config"], run_dir / "config_history.jsonl")

    # The same settings again, from step 4: compared with the record, nothing changes, nothing is refused.
    assert main(_argv(tmp_path, *changed[:-2], "--max-steps", "6", "--resume", "latest",
                      "--allow-config-change", "loop.max_steps")) == 0
    lines = (run_dir / "config_history.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["changes"] == {
        "loop.max_steps": [4, 6], "checkpoint.allow_config_change": [["loop", "optim"], ["loop.max_steps"]]}


def test_a_fresh_start_writes_config_json_and_a_resume_from_another_run_is_compared_with_that_run(tmp_path):
    train(small_config(tmp_path, name="source", steps=2))
    other = small_config(tmp_path, name="copy", steps=2)
    other.optim.lr = 0.01
    other.checkpoint.resume = str(tmp_path / "source" / "checkpoints" / "step_0000002")
    with pytest.raises(ConfigChangeError, match=r"optim.lr 0.001 -> 0.01; resume with"):
        train(other)
    assert not (tmp_path / "copy" / "config.json").exists()
    other.checkpoint.allow_config_change = ("optim.lr",)
    train(other)
    assert json.loads((tmp_path / "copy" / "config.json").read_text())["optim"]["lr"] == 0.01
    record = json.loads((tmp_path / "copy" / "config_history.jsonl").read_text())
    assert record["changes"]["optim.lr"] == [0.001, 0.01] and record["changes"]["logging.name"] == ["source", "copy"]


def test_the_docs_table_of_free_keys_is_the_code_table():
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "training.md").read_text()
    table = text[text.index("| key or section | why it may change |"):].split("\n\n")[0].splitlines()[2:]
    assert table == [f"| `{entry.key}` | {entry.why} |" for entry in FREE_ON_RESUME]
