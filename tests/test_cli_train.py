"""`cliplab train` CLI: the frozen flag surface, flag -> key mapping, start-up errors."""

import argparse
import subprocess
import sys

import pytest

from cliplab.cli import build_parser, main
from cliplab.cli.train_command import FLAGS, overrides_from_args
from cliplab.data.sources import DATASET_TYPES

# Changing this list renames or removes a user-facing flag: update docs/training.md with it.
FROZEN_FLAGS = [
    "--accum-freq", "--batch-size", "--beta1", "--beta2", "--coca-caption-loss-weight",
    "--coca-contrastive-loss-weight", "--config", "--csv-caption-key", "--csv-img-key", "--csv-label-key",
    "--csv-separator", "--parquet-caption-key", "--parquet-image-key", "--parquet-label-key",
    "--dataset-resampled", "--dataset-type", "--deterministic", "--dist-backend", "--dist-impl", "--epochs", "--eps",
    "--fsdp", "--gather-with-grad", "--grad-checkpointing", "--grad-clip-norm", "--keep-checkpoints", "--local-loss",
    "--lock-image", "--lock-image-freeze-bn-stats", "--lock-image-unlocked-groups", "--lock-text",
    "--lock-text-freeze-layer-norm", "--lock-text-unlocked-layers", "--log-every-n-steps", "--logs", "--lr",
    "--lr-scheduler", "--max-nonfinite-steps", "--max-steps", "--model", "--name", "--no-deterministic",
    "--no-fsdp", "--no-gather-with-grad", "--no-grad-checkpointing", "--no-local-loss", "--no-lock-image",
    "--no-lock-image-freeze-bn-stats", "--no-lock-text", "--no-lock-text-freeze-layer-norm",
    "--no-dataset-resampled", "--no-progress-bar", "--no-siglip", "--no-tensorboard", "--no-tiled-loss",
    "--no-torchcompile", "--precision", "--pretrained", "--progress-bar", "--report-to", "--resume",
    "--save-every-steps", "--save-frequency", "--seed", "--set",
    "--siglip", "--tensorboard", "--threads", "--tile-size", "--tiled-loss", "--tokenizer", "--torchcompile",
    "--train-data", "--train-num-samples", "--val-data", "--val-num-samples", "--warmup", "--wd", "--workers",
    "--zeroshot-frequency", "--zeroshot-dataset", "--force-image-size", "--image-mean", "--image-std",
    "--force-context-length", "--context-extension", "--force-patch-dropout", "--train-data-upsampling-factors",
    "--wds-caption-key",
    "--wandb-project-name", "--allow-config-change", "--requeue-exit-code",
    "--train-classes", "--dry-run", "--layer-decay", "--layer-decay-image", "--layer-decay-text", "--lr-image",
    "--lr-text", "--wd-image", "--wd-text", "--wd-exclude", "--lora-rank", "--lora-alpha", "--lora-dropout",
    "--lora-targets", "--lora-image-only", "--no-lora-image-only", "--lora-text-only", "--no-lora-text-only",
    "--ema-decay", "--ema-warmup", "--ema-cpu", "--no-ema-cpu",
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
    from cliplab.train.config.io import resolve_config

    for flag in FLAGS:
        for dotted in flag.keys:
            section, key = dotted.split(".")
            assert key in resolve_config().__dict__[section].__dict__, dotted


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
    (["--name", ".."], "logging.name"),  # wrote into the parent of --logs
    (["--set", "optim.eps=inf"], "optim.eps"),
    (["--lora-rank", "0"], "lora.rank"),
    (["--lora-rank", "-2"], "lora.rank"),
    (["--lora-alpha", "4"], "lora.alpha"),  # no rank: no LoRA to scale
    (["--lora-rank", "4", "--lora-image-only", "--lora-text-only"], "lora.text_only"),
    (["--lora-rank", "4", "--lora-targets", "attn.qkv,nope", "--max-steps", "1"], "lora.targets"),
    (["--layer-decay", "0"], "optim.layer_decay"),
    (["--layer-decay", "1.5"], "optim.layer_decay"),
    (["--layer-decay-text", "-0.5"], "optim.layer_decay_text"),
    (["--wd-exclude", "norm("], "optim.wd_exclude"),
    (["--ema-decay", "1"], "ema.decay"),
    (["--ema-decay", "0"], "ema.decay"),
    (["--ema-warmup", "10"], "ema.warmup"),  # no decay: no EMA to warm up
    (["--train-classes", "0,-1"], "data"),
    (["--dataset-type", "parquet", "--train-data", "x.parquet", "--train-classes", "1"], "data"),
])
def test_bad_config_fails_at_start_naming_the_key(argv, named, capsys, tmp_path):
    code = main(["train", "--logs", str(tmp_path), *argv])
    assert code == 2
    error = capsys.readouterr().err
    assert f"'{named}'" in error
    assert len(error.strip().splitlines()) == 1, error  # one line, no traceback
    assert not any(tmp_path.iterdir())  # nothing was started


def test_fp16_on_cpu_is_a_start_up_error(capsys, tmp_path):
    code = main(["train", "--logs", str(tmp_path), "--name", "x", "--precision", "amp", "--max-steps", "1"])
    assert code == 2
    assert "'loop.precision'" in capsys.readouterr().err


# --- help text, open_clip flags, torchrun -------------------------------------------------------


def test_help_shows_readable_placeholders(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "FLAG__" not in text and "flag__" not in text
    for shown in ("--train-data PATH", "--batch-size BATCH_SIZE", "--logs DIR", "--resume {latest,DIR}",
                  f"--dataset-type {{{','.join(DATASET_TYPES)}}}", "--report-to {tensorboard,wandb,all,none}",
                  "--image-mean M M M", "--force-image-size SIZE"):
        assert shown in text, shown


def test_help_groups_the_flags_by_section_and_shows_every_default(capsys):
    # Before: 251 flat lines, no defaults, ending "< the flags below" with the flags above.
    import re

    from cliplab.cli.train_command import HELP_GROUPS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    headers = [line[:-1] for line in text.splitlines() if line.endswith(":") and not line.startswith(" ")]
    assert headers == ["options", "configuration", *dict.fromkeys(HELP_GROUPS.values()), "examples"]
    groups = dict(zip(headers, re.split(r"^\S.*:$", text, flags=re.MULTILINE)[1:]))
    for flag in FLAGS:
        assert flag.name in groups[HELP_GROUPS[flag.section]], flag.name
    helps = {action.option_strings[0]: action.help for action in _train_parser()._actions if action.option_strings}
    assert all("(default: " in helps[flag.name] for flag in FLAGS)
    flat = " ".join(text.split())
    for shown in ("per micro-batch) (default: 128) [loop.batch_size]", "peak learning rate (default: 0.002) [optim.lr]",
                  "(default: fp32) [loop.precision]", "freeze the image tower (default: off) [model.lock_image]",
                  "column separator of a csv manifest (default: tab)", "(default: tensorboard) [logging.tensorboard, "
                  "logging.wandb]", "(default: ./logs) [logging.logs]"):
        assert shown in flat, shown
    assert "the flags below" not in text


def test_open_clip_flags_map_onto_cliplab_keys():
    args = build_parser().parse_args(["train", "--dataset-resampled", "--coca-caption-loss-weight", "1.5",
                                      "--coca-contrastive-loss-weight", "0.5", "--report-to", "tensorboard"])
    assert overrides_from_args(args) == {"data.dataset_resampled": True, "loss.coca_caption_loss_weight": 1.5,
                                         "loss.coca_contrastive_loss_weight": 0.5, "logging.tensorboard": True,
                                         "logging.wandb": False}


def test_image_flags_map_onto_the_model_section():
    args = build_parser().parse_args(["train", "--force-image-size", "64", "--image-mean", "0.5", "0.4", "0.3",
                                      "--image-std", "0.2", "0.2", "0.2"])
    overrides = overrides_from_args(args)
    assert overrides == {"model.force_image_size": 64, "model.image_mean": [0.5, 0.4, 0.3],
                         "model.image_std": [0.2, 0.2, 0.2]}
    from cliplab.train.config.io import resolve_config

    assert resolve_config(None, overrides).model.image_mean == (0.5, 0.4, 0.3)


def test_data_column_flags_map_onto_data_keys():
    args = build_parser().parse_args(["train", "--dataset-type", "parquet", "--parquet-image-key", "picture",
                                      "--parquet-caption-key", "alt_text", "--parquet-label-key", "class_id",
                                      "--csv-label-key", "label"])
    assert overrides_from_args(args) == {"data.dataset_type": "parquet", "data.parquet_image_key": "picture",
                                         "data.parquet_caption_key": "alt_text", "data.parquet_label_key": "class_id",
                                         "data.csv_label_key": "label"}


@pytest.mark.parametrize("value, tensorboard, wandb", [
    ("tensorboard", True, False), ("all", True, True), ("none", False, False), ("", False, False),
    ("TensorBoard,", True, False), ("wandb", False, True), ("wandb,tensorboard", True, True)])
def test_report_to_chooses_the_sinks(value, tensorboard, wandb):
    args = build_parser().parse_args(["train", "--report-to", value])
    assert overrides_from_args(args) == {"logging.tensorboard": tensorboard, "logging.wandb": wandb}


@pytest.mark.parametrize("value", ["comet", "wandb,comet", "none,tensorboard"])
def test_report_to_refuses_what_cliplab_cannot_do(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", "--report-to", value])
    assert exit_info.value.code == 2
    assert "--report-to" in capsys.readouterr().err


def test_torchrun_passes_logs_through_after_a_double_dash(monkeypatch):
    from torch.distributed.run import config_from_args, get_args_parser

    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # config_from_args would set it in this process otherwise
    torchrun = get_args_parser()
    with pytest.raises(SystemExit):  # without "--", torchrun takes --logs for a prefix of its --logs-specs
        torchrun.parse_args(["--nproc_per_node", "2", "-m", "cliplab", "train", "--logs", "runs"])
    launch = torchrun.parse_args(["--nproc_per_node", "2", "-m", "cliplab", "--", "train", "--logs", "runs",
                                  "--name", "ddp-run", "--resume", "latest"])
    _, _, worker_argv = config_from_args(launch)
    assert worker_argv == ["-u", "-m", "cliplab", "train", "--logs", "runs", "--name", "ddp-run", "--resume",
                           "latest"]
    args = build_parser().parse_args(worker_argv[3:])  # what `python -m cliplab` parses in each worker
    assert overrides_from_args(args) == {"logging.logs": "runs", "logging.name": "ddp-run",
                                         "checkpoint.resume": "latest"}

    from cliplab.cli.train_command import EPILOG

    shown = [line.split()[1:] for line in EPILOG.splitlines() if line.strip().startswith("torchrun ")]
    assert shown and all("--logs" in argv for argv in shown)
    for argv in shown:  # the help's examples work as shown
        _, _, worker_argv = config_from_args(torchrun.parse_args(argv))
        assert overrides_from_args(build_parser().parse_args(worker_argv[3:]))["logging.logs"] == "runs"


# --- user errors: one line on stderr, exit status 2; bugs keep their traceback ------------------


def _tiny_run_argv(logs, *extra):
    return ["train", "--logs", str(logs), "--name", "run", "--max-steps", "2", "--batch-size", "8", "--workers", "0",
            "--threads", "1", "--no-progress-bar", "--no-tensorboard",
            "--set", "model.overrides={vision.width: 16, text.width: 32, text.heads: 2, text.layers: 1, "
                     "text.context_length: 20, embed_dim: 16}", *extra]


def _assert_user_error(code, capsys, *fragments):
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("cliplab train: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_missing_csv_manifest_is_a_user_error(tmp_path, capsys):
    code = main(_tiny_run_argv(tmp_path, "--dataset-type", "csv", "--train-data", str(tmp_path / "absent.tsv"),
                               "--val-data", str(tmp_path / "absent.tsv")))
    _assert_user_error(code, capsys, "absent.tsv")


def test_manifest_without_the_caption_column_is_a_user_error(tmp_path, capsys):
    from data_fixtures import make_manifest

    manifest = make_manifest(tmp_path / "data", 4)
    code = main(_tiny_run_argv(tmp_path, "--dataset-type", "csv", "--train-data", str(manifest),
                               "--csv-caption-key", "caption"))
    _assert_user_error(code, capsys, "'data.csv_caption_key'")


def test_a_manifest_without_integer_labels_is_a_user_error(tmp_path, capsys):
    from data_fixtures import make_manifest

    manifest = make_manifest(tmp_path / "data", 4)  # the title column holds "caption 0", ...: not class labels
    code = main(_tiny_run_argv(tmp_path, "--dataset-type", "csv", "--train-data", str(manifest),
                               "--set", "data.csv_label_key=title"))
    _assert_user_error(code, capsys, "manifest", "'title'")


def test_all_bad_samples_is_a_user_error(tmp_path, capsys):
    from data_fixtures import make_manifest

    manifest = make_manifest(tmp_path / "data", 16, bad={index: "garbage" for index in range(16)})
    code = main(_tiny_run_argv(tmp_path, "--dataset-type", "csv", "--train-data", str(manifest),
                               "--set", "data.skip_check_min_samples=4"))
    _assert_user_error(code, capsys, "bad")


def test_missing_fashion_mnist_is_a_user_error_listing_the_ways_to_get_it(tmp_path, capsys, monkeypatch):
    import cliplab.train.setup.data as data_setup
    from cliplab.data.fashion_mnist_files import locate_fashion_mnist

    def no_fashion_mnist_anywhere(data):  # as on a machine without the data, offline
        return locate_fashion_mnist("train", system_dir=tmp_path / "system", cache_dir=tmp_path / "cache",
                                    download=False)

    monkeypatch.setattr(data_setup, "build_train_dataset", no_fashion_mnist_anywhere)
    code = main(_tiny_run_argv(tmp_path / "logs"))
    _assert_user_error(code, capsys, "Fashion-MNIST train split", "1. pass a directory", "2. install", "3. put")


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    import cliplab.train as train_package

    def buggy_train(config):
        raise ValueError("an internal inconsistency")  # not a UserError: a bug

    monkeypatch.setattr(train_package, "train", buggy_train)
    with pytest.raises(ValueError, match="internal inconsistency"):
        main(["train", "--logs", str(tmp_path)])


def test_csv_run_without_val_data_trains_and_skips_the_final_evaluation(tmp_path, capsys):
    """Also what its console says, as a log file gets it (capsys: not a terminal): the config's path and
    what differs from the defaults, the image statistics, the warmup warning, a plain line per step."""
    import json

    from cliplab.data.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    from data_fixtures import make_manifest

    manifest = make_manifest(tmp_path / "data", 32)
    code = main(_tiny_run_argv(tmp_path / "logs", "--dataset-type", "csv", "--train-data", str(manifest),
                               "--force-image-size", "32", "--log-every-n-steps", "1"))
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, captured.err
    assert "note: no evaluation at the end" in out and "--val-data" in out
    summary = json.loads((tmp_path / "logs" / "run" / "summary.json").read_text())
    assert summary["steps"] == 2 and "image_to_text_R@1" not in summary and "zero_shot_top1" not in summary

    run_dir = tmp_path / "logs" / "run"
    assert f"config: {run_dir / 'config.json'}; set here (the rest are defaults):\n" in out
    assert '\n  data.dataset_type: "csv"\n' in out and "\n  loop.max_steps: 2\n" in out
    assert "resolved config" not in out and '"optim": {' not in out  # not the whole config
    assert ("warning: warmup is 100 steps (--warmup) but the run has 2: the learning rate rises to 4e-05 at the "
            "last step and never reaches its peak 0.002 (--lr)") in out
    assert ("\npreprocessing: 32x32 bicubic, resize shortest, mean (0.4815, 0.4578, 0.4082), std (0.2686, 0.2613, "
            "0.2758); training: random resized crop scale (0.9, 1), ratio (0.75, 1.333), horizontal flip; from OpenAI "
            "CLIP's statistics: the tiny config's are Fashion-MNIST's grayscale ones, which do not fit csv images; "
            "--image-mean/--image-std choose others, size from --force-image-size\n") in out
    steps = [line for line in out.splitlines() if line.startswith("step ")]
    assert [line.split(" | ")[:2] for line in steps] == [["step 1/2 (50%)", "epoch 0"], ["step 2/2 (100%)", "epoch 0"]]
    assert all(" | loss " in line and " | lr " in line and " samples/s | data wait " in line for line in steps)
    assert "\r" not in out + captured.err
    bundle_config = json.loads((run_dir / "checkpoints" / "step_0000002" / "config.json").read_text())
    assert bundle_config["vision"]["image_size"] == bundle_config["preprocess"]["image_size"] == 32
    assert tuple(bundle_config["preprocess"]["mean"]) == OPENAI_CLIP_MEAN
    assert tuple(bundle_config["preprocess"]["std"]) == OPENAI_CLIP_STD


def test_csv_run_with_val_data_reports_retrieval_and_no_zero_shot(tmp_path, capsys):
    import json

    from data_fixtures import make_manifest

    manifest = make_manifest(tmp_path / "data", 32)
    code = main(_tiny_run_argv(tmp_path / "logs", "--dataset-type", "csv", "--train-data", str(manifest),
                               "--val-data", str(manifest)))
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads((tmp_path / "logs" / "run" / "summary.json").read_text())
    assert "image_to_text_R@1" in summary and "zero_shot_top1" not in summary  # no classes to name: retrieval only
    assert "retrieval R@1 image-to-text" in out


def _tokenizer_file(path, captions):
    from cliplab.data.tokenizer import Tokenizer

    Tokenizer.train(captions, vocab_size=300, context_length=20).save(path)
    return str(path)


def test_parquet_run_reads_the_columns_the_flags_name(tmp_path, capsys):
    import json

    pytest.importorskip("pyarrow")
    from data_fixtures import make_parquet

    for part in range(2):
        make_parquet(tmp_path / "data" / f"train-{part}.parquet", 12, first=12 * part, image_key="picture",
                     caption_key="alt_text", label_key="class_id", bad={5: "null-image"})
    tokenizer = _tokenizer_file(tmp_path / "tok.json", [f"caption {i}" for i in range(24)])
    code = main(_tiny_run_argv(tmp_path / "logs", "--dataset-type", "parquet",
                               "--train-data", str(tmp_path / "data" / "train-*.parquet"),
                               "--val-data", str(tmp_path / "data"), "--parquet-image-key", "picture",
                               "--parquet-caption-key", "alt_text", "--parquet-label-key", "class_id",
                               "--tokenizer", tokenizer))
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "logs" / "run" / "summary.json").read_text())
    assert summary["steps"] == 2 and "image_to_text_R@1" in summary


def test_webdataset_run_takes_its_epoch_from_the_shards_info_file(tmp_path, capsys):
    import json

    from cliplab.data.csv_dataset import CsvDataset
    from cliplab.data.webdataset_writer import dataset_records, write_shards
    from data_fixtures import make_manifest

    report = write_shards(dataset_records(CsvDataset(make_manifest(tmp_path / "data", 20))),
                          out_dir=tmp_path / "shards", prefix="train", samples_per_shard=10)
    tokenizer = _tokenizer_file(tmp_path / "tok.json", [f"caption {i}" for i in range(20)])
    argv = _tiny_run_argv(tmp_path / "logs", "--dataset-type", "webdataset", "--train-data", report.pattern,
                          "--tokenizer", tokenizer, "--max-steps", "none", "--epochs", "2")
    assert main(argv) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "logs" / "run" / "summary.json").read_text())
    assert summary["steps"] == 6  # 2 epochs of ceil(20 samples / batch 8) steps, the 20 read from train-info.json


def test_periodic_evaluation_without_val_data_fails_at_start(tmp_path, capsys):
    code = main(["train", "--logs", str(tmp_path), "--dataset-type", "csv", "--train-data", "x.tsv",
                 "--zeroshot-frequency", "1"])
    _assert_user_error(code, capsys, "'eval.zeroshot_frequency'", "--val-data")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("model, objective", [("tiny-coca", "contrastive.decoupled"),
                                              ("tiny-siglip", "contrastive.extra_latent_projection")])
def test_objective_replacing_the_loss_of_a_coca_or_siglip_model_fails_at_start(model, objective, tmp_path, capsys):
    siglip = ["--siglip"] if model == "tiny-siglip" else []
    code = main(["train", "--logs", str(tmp_path), "--name", "x", "--model", model, *siglip, "--max-steps", "1",
                 "--set", f"objectives.{objective}=true"])
    _assert_user_error(code, capsys, f"'{objective}'", f"{model.split('-')[1]} model")


def test_a_missing_val_manifest_fails_at_start_up_not_after_training(tmp_path, capsys):
    # Before: reported only after training.
    from data_fixtures import make_manifest

    manifest = make_manifest(tmp_path / "data", 32)
    absent = tmp_path / "absent.tsv"
    code = main(_tiny_run_argv(tmp_path / "logs", "--dataset-type", "csv", "--train-data", str(manifest),
                               "--val-data", str(absent)))
    assert (code, capsys.readouterr().err) == (2, f"cliplab train: error: --val-data {absent} (data.val_data, read by "
                                                  f"the evaluation): manifest {absent} does not exist\n")
    assert not (tmp_path / "logs" / "run").exists()  # not one step trained, and no empty run directory left


def test_a_non_utf8_manifest_is_one_line_from_the_command(tmp_path):
    """As a user runs it: a subprocess, exit status 2, one line on stderr, no traceback."""
    from data_fixtures import make_manifest

    manifest = make_manifest(tmp_path / "data", 8)
    manifest.write_bytes(manifest.read_bytes().replace(b"caption 3", b"caption \xff3"))
    completed = subprocess.run([sys.executable, "-m", "cliplab", *_tiny_run_argv(
        tmp_path / "logs", "--dataset-type", "csv", "--train-data", str(manifest))], capture_output=True, text=True,
        timeout=120)
    assert (completed.returncode, completed.stderr) == (2, (
        f"cliplab train: error: config key 'data.train_data' (--train-data): manifest {manifest} line 5: not UTF-8 "
        "text (byte 0xff); save the manifest as UTF-8\n"))


def test_an_empty_caption_list_is_one_line_at_start_up(tmp_path, capsys):
    from data_fixtures import make_manifest

    manifest = make_manifest(tmp_path / "data", 8)
    manifest.write_text(manifest.read_text().replace("caption 3", "[]"))
    code = main(_tiny_run_argv(tmp_path / "logs", "--dataset-type", "csv", "--train-data", str(manifest)))
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"manifest {manifest} line 5, column 'title': the list of captions is empty" in err


def test_accum_freq_over_an_epochs_batches_names_the_flag(tmp_path, capsys):
    from data_fixtures import make_manifest

    manifest = make_manifest(tmp_path / "data", 32)  # 4 batches of 8
    code = main(_tiny_run_argv(tmp_path / "logs", "--dataset-type", "csv", "--train-data", str(manifest),
                               "--accum-freq", "5"))
    assert (code, capsys.readouterr().err) == (2, (
        "cliplab train: error: config key 'loop.accum_freq' must be at most the 4 batches of 8 an epoch has per rank: "
        "lower loop.batch_size or loop.accum_freq, or add data, got 5\n"))


# --- the fine-tuning recipe of docs/pretrained.md -----------------------------------------------


def _recipe_commands() -> list[list[str]]:
    """The `cliplab` command lines of the bash block in docs/pretrained.md's "Fine-tuning" section
    (continuation lines joined), each as argv after `cliplab`."""
    import re
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "pretrained.md").read_text()
    section = re.search(r"^## Fine-tuning\n(.*?)^## ", text, re.DOTALL | re.MULTILINE).group(1)
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    lines = block.replace("\\\n", " ").splitlines()
    assert all(line.startswith("cliplab ") for line in lines), lines
    return [shlex.split(line)[1:] for line in lines]


def test_the_fine_tuning_recipe_runs_as_written(tmp_path, monkeypatch, capsys):
    """In a scratch directory laid out as the recipe assumes (a small random-weight open_clip hub
    directory, 8 captioned images in train.tsv and val.tsv), in this process; the train line gets
    `--epochs 1 --batch-size 4 --workers 0` appended, to fit 8 images and a second."""
    import json

    import torch

    from cliplab.model_io import load_model
    from data_fixtures import make_manifest
    from finetune_fixtures import write_small_hub

    commands = _recipe_commands()
    pretrained = commands[0][commands[0].index("--pretrained") + 1]
    write_small_hub(tmp_path / pretrained)
    manifest = make_manifest(tmp_path, 8)
    (tmp_path / "train.tsv").write_text(manifest.read_text())
    (tmp_path / "val.tsv").write_text(manifest.read_text())
    monkeypatch.chdir(tmp_path)
    for argv in commands:
        extra = ["--epochs", "1", "--batch-size", "4", "--workers", "0"] if argv[0] == "train" else []
        assert main([*argv, *extra]) == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "logs" / "finetune" / "summary.json").read_text())
    assert summary["steps"] == 2 and "image_to_text_R@1" in summary
    fine_tuned = load_model(tmp_path / "logs" / "finetune").model.state_dict()
    exported = load_model(tmp_path / commands[2][commands[2].index("--out") + 1])
    assert exported.format == "open_clip_hub"
    assert all(torch.equal(exported.model.state_dict()[name], tensor) for name, tensor in fine_tuned.items())
    assert (tmp_path / commands[3][commands[3].index("--out") + 1] / "model.safetensors").is_file()
