"""Preemption (RELIABILITY item 16): SIGTERM, SIGUSR1 or SIGINT stop a real `cliplab train` after its
current step on every rank, with a verified checkpoint of that step and the exit status
--requeue-exit-code; the resume continues from that step and ends equal (torch.equal, CPU,
deterministic) to an uninterrupted run, as the kill tests of tests/test_train_resume.py do.

Default suite: the handler's rules in-process, one process signalled at a random step, and 2 ranks
under torchrun where only rank 1 is signalled (the others learn it at the step boundary). `-m slow`:
torchrun forwarding SIGTERM to DDP and FSDP2 workers, a second signal during the save, and signals
again and again at random steps until the run ends.
"""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cliplab.checkpoint_files.manifest import verify_checkpoint
from cliplab.model_io import load_model
from cliplab.train.checkpointing.manager import CheckpointManager
from cliplab.train.preemption import PREEMPTION_SIGNALS, Preemption, PreemptionHandler, preemption_line

from train_helpers import SMALL_MODEL, assert_same_final_checkpoint

STEPS = 30
LAUNCHER = Path(__file__).parent / "preemption_launcher.py"
OVERRIDES = "{" + ", ".join(f"{k}: {v}" for k, v in {**SMALL_MODEL, "text.dropout": 0.1}.items()) + "}"


# --- the handler ------------------------------------------------------------------------------


def test_a_signal_becomes_a_vote_and_the_previous_handlers_come_back():
    before = {signum: signal.getsignal(signum) for signum in PREEMPTION_SIGNALS}
    with PreemptionHandler(exit_code=3) as handler:
        assert handler.votes() == (0, 0, 0)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert handler.received == signal.SIGUSR1 and handler.votes() == (0, 1, 0)
        os.kill(os.getpid(), signal.SIGTERM)  # a repeat within the window: the same request
        assert handler.received == signal.SIGUSR1
    assert {signum: signal.getsignal(signum) for signum in PREEMPTION_SIGNALS} == before


def test_the_ranks_agree_on_the_first_signal_any_of_them_received():
    handler = PreemptionHandler(exit_code=3)
    assert not handler.agree((0, 0, 0)) and handler.agreed is None
    assert handler.agree((0, 2, 1)) and handler.agreed == (signal.SIGUSR1, 2)
    line = preemption_line(Preemption(signal="SIGUSR1", ranks=2, step=17, checkpoint="run/checkpoints/step_0000017",
                                      exit_code=3, save_s=0.25))
    assert line == ("preempted: SIGUSR1 (received by 2 ranks) at step 17; checkpoint run/checkpoints/step_0000017 "
                    "written and verified in 0.2 s; exit status 3; continue with --resume latest")


_SECOND_SIGNAL = """
import os, signal, sys, time
from cliplab.train.preemption import PreemptionHandler
with PreemptionHandler(exit_code=3):
    if os.fork() == 0:  # a forked data-loader worker: the signal is the main process's to act on
        os.kill(os.getpid(), signal.SIGTERM)
        os._exit(0)
    assert os.wait()[1] == 0
    os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGINT)   # within a second: counted once
    print("alive", flush=True)
    time.sleep(1.1)
    os.kill(os.getpid(), signal.SIGINT)   # a second later: the default action, at once
    print("still alive", flush=True)
"""


def test_a_second_signal_a_second_later_ends_the_process_at_once():
    completed = subprocess.run([sys.executable, "-c", _SECOND_SIGNAL], capture_output=True, text=True, timeout=120)
    assert completed.returncode == -signal.SIGINT, completed.stderr
    assert completed.stdout == "alive\n"


# --- one process ------------------------------------------------------------------------------


def _command(logs, name, *, resume=False, exit_code=None, launcher=False):
    entry = [str(LAUNCHER)] if launcher else ["-m", "cliplab"]
    command = [sys.executable, *entry, "train", "--logs", str(logs), "--name", name,
               "--max-steps", str(STEPS), "--batch-size", "8", "--train-num-samples", "128", "--epochs", "10",
               "--workers", "2", "--save-every-steps", "7", "--keep-checkpoints", "2",
               "--log-every-n-steps", "1", "--no-progress-bar", "--no-tensorboard", "--threads", "1",
               "--deterministic", "--warmup", "2", "--set", f"model.overrides={OVERRIDES}",
               "--set", "eval.eval_at_end=false"]
    return command + (["--resume", "latest"] if resume else []) + (
        ["--requeue-exit-code", str(exit_code)] if exit_code is not None else [])


def _train_steps(run_dir):
    metrics = run_dir / "metrics.jsonl"
    if not metrics.exists():
        return []
    return [json.loads(line) for line in metrics.read_text().splitlines()
            if line.endswith("}") and '"kind": "train"' in line]


def _losses(run_dir):
    return {record["step"]: record["loss"] for record in _train_steps(run_dir)}


def _signal_after(process, run_dir, step, send, timeout=240):
    """Call send() once `run_dir` logged step `step`; wait for the process. -> its output."""
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        if len(_train_steps(run_dir)) >= step:
            send()
            break
        time.sleep(0.005)
    out, err = process.communicate(timeout=timeout)
    return out, err


def _run(command, **kwargs):
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300, **kwargs)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-3000:]
    return completed


class Background:
    """A command started now and waited for when its result is needed (so that it runs while the
    test drives another process: two single-threaded runs share the machine's cores)."""

    def __init__(self, command, result):
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.result, self.finished = result, False

    def wait(self):
        if not self.finished:
            out, err = self.process.communicate(timeout=300)
            assert self.process.returncode == 0, out[-2000:] + err[-3000:]
            self.finished = True
        return self.result

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.process.kill()
        self.process.wait()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, started in the background: `reference.wait()` is its run directory."""
    logs = tmp_path_factory.mktemp("reference")
    with Background(_command(logs, "ref"), logs / "ref") as started:
        yield started


def _assert_preempted_at(run_dir, step, signal_name):
    """The run stopped at `step`: its record, a verified checkpoint `latest` names, nothing logged after."""
    record = json.loads((run_dir / "preempted.json").read_text())
    assert record["step"] == step and record["signal"] == signal_name, record
    latest = CheckpointManager(run_dir / "checkpoints", keep=2).latest()
    assert latest.name == f"step_{step:07d}" and record["checkpoint"] == str(latest)
    verify_checkpoint(latest)
    assert [r["step"] for r in _train_steps(run_dir)] == list(range(1, step + 1))
    assert not (run_dir / "summary.json").exists()


def _assert_resumed_like(run_dir, reference_dir, preempted_at):
    assert not (run_dir / "preempted.json").exists()
    assert_same_final_checkpoint(run_dir, reference_dir, steps=STEPS)
    losses, reference_losses = _losses(run_dir), _losses(reference_dir)
    assert sorted(losses) == list(range(1, STEPS + 1))
    for step in range(preempted_at + 1, STEPS + 1):
        assert losses[step] == reference_losses[step], step


def test_sigterm_at_a_random_step_saves_that_step_and_the_resume_matches_the_uninterrupted_run(reference, tmp_path):
    signal_after = random.Random(16).randint(3, 20)
    run_dir = tmp_path / "run"
    process = subprocess.Popen(_command(tmp_path, "run", exit_code=7), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    out, err = _signal_after(process, run_dir, signal_after, lambda: process.send_signal(signal.SIGTERM))
    assert process.returncode == 7, err[-3000:]
    stopped_at = json.loads((run_dir / "preempted.json").read_text())["step"]
    assert signal_after <= stopped_at < STEPS  # the step in flight when the signal came, or the one logged
    _assert_preempted_at(run_dir, stopped_at, "SIGTERM")
    assert (f"preempted: SIGTERM (received by 1 rank) at step {stopped_at}; checkpoint "
            f"{run_dir / 'checkpoints' / f'step_{stopped_at:07d}'} written and verified in ") in out
    assert "exit status 7; continue with --resume latest\n" in out and "Traceback" not in err

    resumed = _run(_command(tmp_path, "run", resume=True))
    assert f"resuming from {run_dir / 'checkpoints' / f'step_{stopped_at:07d}'} (step {stopped_at}," in resumed.stdout
    _assert_resumed_like(run_dir, reference.wait(), stopped_at)


# --- torchrun ---------------------------------------------------------------------------------

TORCHRUN_STEPS = 8


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _torchrun(logs, name, *, fsdp=False):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", str(_free_port()), "--signals-to-handle", "SIGTERM,SIGINT,SIGUSR1",
            "-m", "cliplab", "--", "train", "--logs", str(logs), "--name", name, "--resume", "latest",
            "--max-steps", str(TORCHRUN_STEPS), "--batch-size", "4", "--train-num-samples", "64", "--epochs", "10",
            "--workers", "0", "--threads", "1", "--deterministic", "--warmup", "2", "--save-every-steps", "3",
            "--keep-checkpoints", "2", "--log-every-n-steps", "1", "--local-loss", "--gather-with-grad",
            "--no-progress-bar", "--no-tensorboard", "--set", f"model.overrides={OVERRIDES}",
            "--set", "eval.eval_at_end=false"] + (["--fsdp"] if fsdp else [])


def _worker_of_rank(torchrun_pid: int, rank: int) -> int:
    """The pid of torchrun's worker process of `rank` (its child with RANK=<rank> in its environment)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            environment = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if parent == torchrun_pid and f"RANK={rank}".encode() in environment:
            return int(stat.parent.name)
    raise AssertionError(f"torchrun {torchrun_pid} has no worker of rank {rank}")


def _preempted_torchrun(logs, name, signal_after, send, *, fsdp=False):
    run_dir = logs / name
    process = subprocess.Popen(_torchrun(logs, name, fsdp=fsdp), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    out, err = _signal_after(process, run_dir, signal_after, lambda: send(process))
    stopped_at = json.loads((run_dir / "preempted.json").read_text())["step"]
    # torchrun ends with status 1 either way, so job scripts read preempted.json: signalled itself, it
    # forwards the signal and raises its own SignalException; when only a worker was, it reports the
    # workers' status 3 as a failure.
    assert process.returncode == 1, err[-3000:]
    assert "(exitcode: 3)" in err or "SignalException: Process" in err, err[-3000:]
    assert not [line for line in err.splitlines() if line.lstrip().startswith("File") and "/cliplab/" in line]
    return run_dir, stopped_at, out


def test_torchrun_rank_1_alone_signalled_stops_both_ranks_at_the_same_step(tmp_path):
    """SIGUSR1 reaches rank 1 only (as a signal relayed to one process may): rank 0 learns it at the
    next step boundary, saves the step both reached and the resume ends as the uninterrupted run."""
    with Background(_torchrun(tmp_path, "reference"), tmp_path / "reference") as reference:
        signal_after = random.Random(2).randint(2, 5)
        run_dir, stopped_at, out = _preempted_torchrun(
            tmp_path, "run", signal_after, lambda process: os.kill(_worker_of_rank(process.pid, 1), signal.SIGUSR1))
        assert signal_after <= stopped_at < TORCHRUN_STEPS
        _assert_preempted_at(run_dir, stopped_at, "SIGUSR1")
        assert f"preempted: SIGUSR1 (received by 1 rank) at step {stopped_at}; checkpoint" in out

        resumed = _run(_torchrun(tmp_path, "run"))
        assert f"(step {stopped_at}," in resumed.stdout
        assert_same_final_checkpoint(run_dir, reference.wait(), steps=TORCHRUN_STEPS)
        assert [r["step"] for r in _train_steps(run_dir)] == list(range(1, TORCHRUN_STEPS + 1))


@pytest.mark.slow
@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp2"])
def test_torchrun_forwards_sigterm_to_every_worker_and_the_resume_matches(tmp_path, fsdp):
    with Background(_torchrun(tmp_path, "reference", fsdp=fsdp), tmp_path / "reference") as reference:
        signal_after = random.Random(3 + fsdp).randint(2, 5)
        run_dir, stopped_at, out = _preempted_torchrun(tmp_path, "run", signal_after,
                                                       lambda process: process.send_signal(signal.SIGTERM), fsdp=fsdp)
        _assert_preempted_at(run_dir, stopped_at, "SIGTERM")
        assert f"preempted: SIGTERM (received by 2 ranks) at step {stopped_at}" in out
        if fsdp:
            assert (run_dir / "checkpoints" / f"step_{stopped_at:07d}" / "shards" / ".metadata").is_file()
        _run(_torchrun(tmp_path, "run", fsdp=fsdp))
        reference_dir = reference.wait()
    losses, reference_losses = _losses(run_dir), _losses(reference_dir)
    assert sorted(losses) == list(range(1, TORCHRUN_STEPS + 1)) and losses == reference_losses
    if not fsdp:
        assert_same_final_checkpoint(run_dir, reference_dir, steps=TORCHRUN_STEPS)
        return
    weights, reference_weights = (load_model(directory, require_tokenizer=False).model.state_dict()
                                  for directory in (run_dir, reference_dir))
    assert weights.keys() == reference_weights.keys()
    assert all(torch.equal(weights[name], reference_weights[name]) for name in weights)


# --- slow: a second signal, and signals again and again ------------------------------------------


@pytest.mark.slow
def test_a_second_signal_during_the_save_exits_at_once_and_latest_keeps_the_previous_checkpoint(reference, tmp_path):
    run_dir, checkpoints = tmp_path / "run", tmp_path / "run" / "checkpoints"
    environment = {**os.environ, "CLIPLAB_TEST_SLOW_PUBLISH_S": "3"}  # every save takes 3 s more
    process = subprocess.Popen(_command(tmp_path, "run", launcher=True), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=environment)
    first = exited_after = None
    try:
        deadline = time.time() + 240
        while time.time() < deadline and process.poll() is None:
            steps = [r["step"] for r in _train_steps(run_dir)]
            if first is None and steps and steps[-1] >= 9 and steps[-1] % 7:  # not a periodic save's step
                process.send_signal(signal.SIGTERM)
                first, previous = time.time(), CheckpointManager(checkpoints, keep=2).latest()
            if first is not None and time.time() - first > 1.2 and any(checkpoints.glob(".tmp-step_*")):
                sent = time.time()
                process.send_signal(signal.SIGINT)
                process.wait(timeout=60)
                exited_after = time.time() - sent
                break
            time.sleep(0.005)
    finally:
        process.kill()
        process.wait()
    assert exited_after is not None, "the run ended before a save could be signalled: " + process.stderr.read()[-3000:]
    assert process.returncode == -signal.SIGINT and exited_after < 1.0, (process.returncode, exited_after)
    assert previous.name == "step_0000007"
    assert CheckpointManager(checkpoints, keep=2).latest() == previous
    verify_checkpoint(previous)
    assert not (run_dir / "preempted.json").exists()

    resumed = _run(_command(tmp_path, "run", resume=True))
    assert f"resuming from {previous} (step 7," in resumed.stdout
    _assert_resumed_like(run_dir, reference.wait(), 7)


@pytest.mark.slow
def test_signals_again_and_again_at_random_steps_end_as_the_uninterrupted_run(reference, tmp_path):
    """SIGTERM, SIGUSR1 and SIGINT in turn, each at a random step of a resumed attempt, until the run
    finishes: weights, optimiser, counters and every loss equal the uninterrupted run's."""
    chooser = random.Random(19)
    run_dir = tmp_path / "run"
    stops = []
    for attempt in range(12):
        logged = len(_train_steps(run_dir))
        signum = PREEMPTION_SIGNALS[attempt % 3]
        process = subprocess.Popen(_command(tmp_path, "run", resume=True), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        out, err = _signal_after(process, run_dir, logged + chooser.randint(1, 6),
                                 lambda: process.send_signal(signum))
        if process.returncode == 0:
            break
        assert process.returncode == 3, err[-3000:]
        stops.append(json.loads((run_dir / "preempted.json").read_text())["step"])
        _assert_preempted_at(run_dir, stops[-1], signum.name)
    assert process.returncode == 0 and len(stops) >= 3, stops
    reference = reference.wait()
    assert_same_final_checkpoint(run_dir, reference, steps=STEPS)
    assert _losses(run_dir) == _losses(reference)
    final = CheckpointManager(run_dir / "checkpoints", keep=2).latest()
    reference_final = CheckpointManager(reference / "checkpoints", keep=2).latest()
    states = [torch.load(path / "train_state.pt", weights_only=False)["rng"] for path in (final, reference_final)]
    assert all(torch.equal(a["torch"], b["torch"]) for a, b in zip(*states))
