"""`cliplab train` CLI: the frozen flag surface, flag -> key mapping, start-up errors."""

import argparse

import pytest

from cliplab.cli import build_parser, main
from cliplab.cli.train_command import FLAGS, overrides_from_args

# Changing this list renames or removes a user-facing flag: update docs/training.md with it.
FROZEN_FLAGS = [
    "--accum-freq", "--batch-size", "--beta1", "--beta2", "--config", "--csv-caption-key", "--csv-img-key",
    "--csv-separator", "--dataset-type", "--deterministic", "--dist-backend", "--dist-impl", "--epochs", "--eps",
    "--gather-with-grad", "--grad-checkpointing", "--grad-clip-norm", "--keep-checkpoints", "--local-loss",
    "--lock-image", "--lock-image-freeze-bn-stats", "--lock-image-unlocked-groups", "--lock-text",
    "--lock-text-freeze-layer-norm", "--lock-text-unlocked-layers", "--log-every-n-steps", "--logs", "--lr",
    "--lr-scheduler", "--max-nonfinite-steps", "--max-steps", "--model", "--name", "--no-deterministic",
    "--no-gather-with-grad", "--no-grad-checkpointing", "--no-local-loss", "--no-lock-image",
    "--no-lock-image-freeze-bn-stats", "--no-lock-text", "--no-lock-text-freeze-layer-norm",
    "--no-progress-bar", "--no-siglip", "--no-tensorboard", "--no-tiled-loss", "--no-torchcompile",
    "--precision", "--progress-bar", "--resume", "--save-every-steps", "--save-frequency", "--seed", "--set",
    "--siglip", "--tensorboard", "--threads", "--tile-size", "--tiled-loss", "--tokenizer", "--torchcompile",
    "--train-data", "--train-num-samples", "--val-data", "--val-num-samples", "--warmup", "--wd", "--workers",
    "--zeroshot-frequency",
]


def _train_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    subparsers = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    return subparsers.choices["train"]


def test_cli_surface_is_frozen():
    flags = sorted(option for action in _train_parser()._actions for option in action.option_strings
                   if option.startswith("--") and option != "--help")
    assert flags == sorted(FROZEN_FLAGS)


def test_every_flag_maps_to_a_real_config_key():
    from cliplab.train.config_io import resolve_config

    for flag in FLAGS:
        section, key = flag.key.split(".")
        assert key in resolve_config().__dict__[section].__dict__, flag.key


def test_flags_become_overrides_and_win_over_set():
    args = build_parser().parse_args(["train", "--lr", "0.01", "--local-loss", "--no-tensorboard",
                                      "--set", "optim.lr=0.5", "--set", "loop.epochs=2", "--max-steps", "none"])
    overrides = overrides_from_args(args)
    assert overrides == {"optim.lr": 0.01, "loss.local_loss": True, "logging.tensorboard": False,
                         "loop.epochs": 2, "loop.max_steps": None}


def test_absent_flags_do_not_override():
    assert overrides_from_args(build_parser().parse_args(["train"])) == {}


@pytest.mark.parametrize("argv, named", [
    (["--lr", "-1"], "optim.lr"),
    (["--set", "optim.lrr=1"], "optim.lrr"),
    (["--local-loss"], "loss.local_loss"),
    (["--resume", "latest"], "checkpoint.resume"),
])
def test_bad_config_fails_at_start_naming_the_key(argv, named, capsys, tmp_path):
    code = main(["train", "--logs", str(tmp_path), *argv])
    assert code == 2
    assert f"'{named}'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was started


def test_fp16_on_cpu_is_a_start_up_error(capsys, tmp_path):
    code = main(["train", "--logs", str(tmp_path), "--name", "x", "--precision", "amp", "--max-steps", "1"])
    assert code == 2
    assert "'loop.precision'" in capsys.readouterr().err
