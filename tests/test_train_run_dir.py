"""The run directory: one path on every rank, its refusals, its lock, its id and its leftovers."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from cliplab.distributed.launch import run_on_workers
from cliplab.train.checkpointing.run_lock import RunDirectoryInUseError
from cliplab.train.config import ConfigError
from cliplab.train.run_dir import claim_run_dir

from train_helpers import small_config


def _resuming(logs, name):
    config = small_config(logs, name=name)
    config.checkpoint.resume = "latest"
    return config


def _claimed_path(config):
    with claim_run_dir(config) as run_directory:
        return run_directory.path


def test_fresh_run_refuses_an_existing_run_directory(tmp_path):
    config = small_config(tmp_path, name="old")
    assert _claimed_path(config) == tmp_path / "old"
    (tmp_path / "old" / "metrics.jsonl").write_text("")  # a run that failed at start-up: not a run
    assert _claimed_path(config) == tmp_path / "old"
    (tmp_path / "old" / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n')
    with pytest.raises(ConfigError, match="'logging.name' names an existing run"):
        claim_run_dir(config)
    config.checkpoint.resume = "latest"
    assert _claimed_path(config) == tmp_path / "old"  # the refusal released the lock


def _prepare_on_ranks(rank, world_size, logs):
    outcomes = []
    for name in (None, "existing"):
        try:
            outcomes.append(str(_claimed_path(small_config(logs, name=name))))
        except ConfigError as error:  # the same type on every rank: rebuilt from rank 0's
            outcomes.append(f"ConfigError: {error} (key {error.key})")
    return outcomes


def test_every_rank_gets_rank_0s_directory_or_its_refusal(tmp_path):
    (tmp_path / "existing" / "checkpoints").mkdir(parents=True)
    # Before the fix only rank 0 raised; rank 1 went on with a refused directory, into collectives
    # rank 0 never joins.
    rank0, rank1 = run_on_workers(_prepare_on_ranks, 2, str(tmp_path), timeout_s=60)
    assert rank0 == rank1
    assert rank0[0].startswith(str(tmp_path)) and "-model_tiny-" in rank0[0]  # rank 0's timestamped name
    assert rank0[1].startswith("ConfigError: config key 'logging.name' names an existing run")
    assert rank0[1].endswith("(key logging.name)")


# A process that claims <logs>/held, forks a child that outlives it (as a data-loader worker would
# for a moment), says so and waits to be killed.
HOLDER = textwrap.dedent("""
    import os, sys, time
    sys.path.insert(0, {tests!r})
    from train_helpers import small_config
    from cliplab.train.run_dir import claim_run_dir
    run_directory = claim_run_dir(small_config({logs!r}, name="held"))
    child = os.fork()
    if child == 0:
        time.sleep(60)
        os._exit(0)
    print(child, flush=True)
    time.sleep(60)
""")


def test_the_lock_names_its_holder_and_dies_with_it_not_with_its_children(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER.format(tests=os.path.dirname(__file__), logs=str(tmp_path))],
                              stdout=subprocess.PIPE, text=True)
    child = None
    try:
        child = int(holder.stdout.readline())
        config = _resuming(tmp_path, "held")
        with pytest.raises(RunDirectoryInUseError) as refused:
            claim_run_dir(config)
        assert str(refused.value).startswith(f"run directory {tmp_path / 'held'} is in use by another cliplab "
                                             f"train (pid {holder.pid} on host ")
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        os.kill(child, 0)  # the forked child is still alive, and does not hold the lock
        assert _claimed_path(config) == tmp_path / "held"
    finally:
        holder.kill()
        holder.wait()
        if child is not None:
            os.kill(child, signal.SIGKILL)


def test_a_second_claim_in_the_same_process_is_refused(tmp_path):
    config = small_config(tmp_path, name="twice")
    with claim_run_dir(config):
        config.checkpoint.resume = "latest"
        with pytest.raises(RunDirectoryInUseError, match=f"pid {os.getpid()} \\(this process\\)"):
            claim_run_dir(config)
    assert _claimed_path(config) == tmp_path / "twice"


def test_the_run_id_is_kept_and_only_the_runs_own_leftovers_are_removed(tmp_path):
    config = _resuming(tmp_path, "run")
    with claim_run_dir(config) as first:
        run_id = first.run_id
    run_dir, checkpoints = tmp_path / "run", tmp_path / "run" / "checkpoints"
    (checkpoints / ".tmp-step_0000007").mkdir(parents=True)
    (checkpoints / ".tmp-step_0000007" / "model.safetensors").write_bytes(b"\0" * 1000)
    leftovers = [checkpoints / ".tmp-latest.123", run_dir / ".tmp-summary.json.45", run_dir / "metrics.jsonl.tmp"]
    kept = [run_dir / "notes.txt", checkpoints / "notes.txt", checkpoints / "step_0000003" / "model.safetensors"]
    for path in leftovers + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    with claim_run_dir(config) as second:
        assert second.run_id == run_id == (run_dir / "run_id").read_text().strip()
    assert not (checkpoints / ".tmp-step_0000007").exists()
    assert not any(path.exists() for path in leftovers)
    assert all(path.read_text() == "x" for path in kept)


def _train_argv(logs, *extra):
    return ["train", "--logs", str(logs), "--name", "busy", "--batch-size", "8", "--workers", "0", "--threads", "1",
            "--no-progress-bar", "--no-tensorboard", "--train-num-samples", "64", "--set", "eval.eval_at_end=false",
            "--set", "model.overrides={vision.width: 16, text.width: 32, text.heads: 2, text.layers: 1, "
                     "text.context_length: 20, embed_dim: 16}", *extra]


def test_a_second_run_on_a_busy_directory_fails_at_once_naming_the_holder(tmp_path, capsys):
    # Before: both started; one died when the other's clean-up deleted its temporary directory, and
    # metrics.jsonl interleaved both runs' lines.
    from cliplab.cli import main

    holder = subprocess.Popen([sys.executable, "-m", "cliplab", *_train_argv(tmp_path, "--epochs", "1000")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "busy" / "run.lock"
    try:
        deadline = time.monotonic() + 120
        while not (lock.is_file() and lock.read_text().startswith(f"{holder.pid} ")):
            assert time.monotonic() < deadline and holder.poll() is None, "the holder never took the lock"
            time.sleep(0.02)
        for extra in ([], ["--resume", "latest"], ["--seed", "1", "--resume", "latest"]):
            code = main(_train_argv(tmp_path, "--max-steps", "2", *extra))
            err = capsys.readouterr().err
            assert code == 2
            assert err == (f"cliplab train: error: run directory {tmp_path / 'busy'} is in use by another cliplab "
                           f"train (pid {holder.pid} on host {socket.gethostname()}); wait for it to end, or choose "
                           "another --name\n")
        assert holder.poll() is None, holder.stderr.read()[-2000:]  # the holder runs on, undisturbed
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("mistake", [
    ["--model", "tinyy"],  # the configuration, checked against the model registry
    ["--accum-freq", "5"],  # the data: 4 batches of 8 an epoch
    ["--val-data", "absent.tsv"],  # the evaluation data
])
def test_a_failed_start_leaves_no_run_directory(tmp_path, capsys, monkeypatch, mistake):
    # Before: each failed start left <logs>/<name>/ with run.lock and run_id in it.
    import cliplab.train.trainer as trainer
    from cliplab.cli import main
    from data_fixtures import make_manifest

    claimed = []
    monkeypatch.setattr(trainer, "claim_run_dir", lambda config: claimed.append(1) or claim_run_dir(config))
    manifest = make_manifest(tmp_path / "data", 32)
    code = main(["train", "--logs", str(tmp_path / "logs"), "--name", "run", "--max-steps", "1", "--batch-size", "8",
                 "--dataset-type", "csv", "--train-data", str(manifest), "--workers", "0", *mistake])
    assert code == 2 and capsys.readouterr().err.startswith("cliplab train: error: ")
    assert claimed == [1]  # the mistake was found after the directory was claimed
    assert not (tmp_path / "logs" / "run").exists()


def test_a_failed_start_keeps_a_directory_that_was_there_before(tmp_path, capsys):
    from cliplab.cli import main

    existing = tmp_path / "logs" / "run"
    existing.mkdir(parents=True)
    (existing / "notes.txt").write_text("mine")
    code = main(["train", "--logs", str(tmp_path / "logs"), "--name", "run", "--model", "tinyy"])
    assert code == 2 and "'model.name'" in capsys.readouterr().err
    assert (existing / "notes.txt").read_text() == "mine"
