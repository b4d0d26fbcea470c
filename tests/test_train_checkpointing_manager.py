"""Checkpoints: bitwise round trip, `latest` pointer, pruning, torn saves (simulated and SIGKILL), verified
resume with its fallback, a full disk."""

import errno
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from cliplab.checkpoint_files.manifest import UnverifiedCheckpointError, checkpoint_files, verify_checkpoint
from cliplab.checkpoint_files.step_dirs import NoVerifiedCheckpointError
from cliplab.data.tokenizer import Tokenizer
from cliplab.distributed.launch import run_on_workers
from cliplab.models import create_model
from cliplab.train.checkpointing import manager as checkpoint_module
from cliplab.train.checkpointing.atomic_files import NoSpaceError, format_bytes
from cliplab.train.checkpointing.manager import CheckpointManager, restore_training_state
from cliplab.train.config import OptimConfig
from cliplab.train.state import TrainState
from cliplab.train.step.optim import build_optimizer


def _tiny_setup(seed=0):
    torch.manual_seed(seed)
    model = create_model("tiny", output_dict=True, **{"vision.width": 16, "text.width": 32, "text.heads": 2, "text.layers": 1,
                                    "text.vocab_size": 300})
    tokenizer = Tokenizer.train(["a photo of a cat", "a photo of a dog"], vocab_size=300,
                                context_length=model.config.text.context_length)
    optimizer = build_optimizer(model, OptimConfig())
    images, tokens = torch.randn(4, 3, 28, 28), tokenizer(["a cat", "a dog", "a cat", "a dog"])
    out = model(images, tokens)
    (out["image_features"] @ out["text_features"].T).sum().backward()
    optimizer.step()
    return model, tokenizer, optimizer


def _save(manager, model, tokenizer, optimizer, step):
    return manager.save(model=model, tokenizer=tokenizer, optimizer=optimizer, scaler=None,
                        state=TrainState(step=step, epoch=1, batch_in_epoch=3), config={})


def test_round_trip_is_bitwise_and_restores_rng(tmp_path):
    model, tokenizer, optimizer = _tiny_setup()
    manager = CheckpointManager(tmp_path, keep=2)
    torch.manual_seed(123)
    path = _save(manager, model, tokenizer, optimizer, step=7)
    expected_draw = torch.rand(3)
    assert manager.latest() == path and path.name == "step_0000007"

    fresh, _, fresh_optimizer = _tiny_setup(seed=1)
    state = restore_training_state(path, model=fresh, optimizer=fresh_optimizer)
    assert (state.step, state.epoch, state.batch_in_epoch) == (7, 1, 3)
    for (name, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name
    for a, b in zip(optimizer.state_dict()["state"].values(), fresh_optimizer.state_dict()["state"].values()):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert torch.equal(torch.rand(3), expected_draw)


def test_skip_counters_round_trip_and_older_checkpoints_load_with_zeros(tmp_path):
    model, tokenizer, optimizer = _tiny_setup()
    state = TrainState(step=4, skipped_samples=9, epoch_skipped_samples=2, epoch_samples_drawn=130)
    path = CheckpointManager(tmp_path, keep=2).save(model=model, tokenizer=tokenizer, optimizer=optimizer,
                                                    scaler=None, state=state, config={})
    assert restore_training_state(path, model=model) == state
    payload = torch.load(path / checkpoint_module.TRAIN_STATE_FILE, weights_only=False)
    del payload["train_state"]["epoch_skipped_samples"], payload["train_state"]["epoch_samples_drawn"]
    torch.save(payload, path / checkpoint_module.TRAIN_STATE_FILE)  # as written before the counters
    restored = restore_training_state(path, model=model)
    assert (restored.skipped_samples, restored.epoch_skipped_samples, restored.epoch_samples_drawn) == (9, 0, 0)


def test_keeps_the_newest_k(tmp_path):
    model, tokenizer, optimizer = _tiny_setup()
    manager = CheckpointManager(tmp_path, keep=2)
    for step in (1, 2, 3, 4):
        _save(manager, model, tokenizer, optimizer, step)
    assert [p.name for p in manager.step_dirs()] == ["step_0000003", "step_0000004"]
    assert manager.latest().name == "step_0000004"


def test_crash_before_rename_or_before_pointer_keeps_previous(tmp_path, monkeypatch):
    model, tokenizer, optimizer = _tiny_setup()
    manager = CheckpointManager(tmp_path, keep=3)
    good = _save(manager, model, tokenizer, optimizer, 1)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    # Killed while writing train_state.pt into the temporary directory.
    monkeypatch.setattr(checkpoint_module.torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        _save(manager, model, tokenizer, optimizer, 2)
    monkeypatch.undo()
    assert manager.latest() == good
    # Killed after the rename, before `latest` moved.
    monkeypatch.setattr(checkpoint_module, "write_text_atomic", crash)
    with pytest.raises(KeyboardInterrupt):
        _save(manager, model, tokenizer, optimizer, 3)
    monkeypatch.undo()
    assert manager.latest() == good
    restore_training_state(manager.latest(), model=model)
    # The next save clears the leftovers and succeeds.
    assert _save(manager, model, tokenizer, optimizer, 3) == manager.latest()
    assert not list(tmp_path.glob(".tmp-*"))


SAVER = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, {tests!r})
    from test_train_checkpointing_manager import _tiny_setup, _save
    from cliplab.train.checkpointing.manager import CheckpointManager
    model, tokenizer, optimizer = _tiny_setup()
    manager = CheckpointManager({directory!r}, keep=2)
    step = 0
    while True:
        step += 1
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.fill_(float(step))
        _save(manager, model, tokenizer, optimizer, step)
        print(step, flush=True)
""")


def test_sigkill_during_saves_leaves_a_loadable_latest(tmp_path):
    directory = tmp_path / "checkpoints"
    script = SAVER.format(tests=os.path.dirname(__file__), directory=str(directory))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):  # let a few saves complete, then kill at an arbitrary point of the next one
            assert process.stdout.readline(), "saver died"
        time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    manager = CheckpointManager(directory, keep=2)
    latest = manager.latest()
    assert latest is not None
    model, _, optimizer = _tiny_setup(seed=5)
    state = restore_training_state(latest, model=model, optimizer=optimizer)
    assert all(torch.all(p == float(state.step)) for p in model.parameters())


def _save_on_ranks(rank, world_size, directory):
    """Two saves on every rank: one that works, then one whose write (rank 0's) fails."""
    model, tokenizer, optimizer = _tiny_setup()
    outcomes = [str(_save(CheckpointManager(Path(directory) / "checkpoints", keep=2), model, tokenizer, optimizer, 1))]
    try:
        _save(CheckpointManager(Path(directory) / "blocked", keep=2), model, tokenizer, optimizer, 2)
    except Exception as error:  # noqa: BLE001 - compared across ranks below
        outcomes.append((type(error).__name__, str(error)))
    return outcomes


def test_a_failed_write_on_rank_0_stops_every_rank_with_its_cause(tmp_path):
    """Only rank 0 writes; before, rank 1 went on into the next step's collectives and waited there
    until the process-group timeout."""
    (tmp_path / "blocked").write_text("a file where the checkpoint directory should be\n")
    rank0, rank1 = run_on_workers(_save_on_ranks, 2, str(tmp_path), timeout_s=600)
    assert rank0[0] == rank1[0] == str(tmp_path / "checkpoints" / "step_0000001")  # the path on every rank
    assert rank0[1] == rank1[1] and rank0[1][0] == "FileExistsError" and str(tmp_path / "blocked") in rank0[1][1]


# --- verified resume: every file damaged in turn, bad pointers, pruning, a full disk -------------


@pytest.fixture(scope="module")
def two_checkpoints(tmp_path_factory):
    """checkpoints/ holding step_0000001 and step_0000002 of one run; copy it before damaging it."""
    directory = tmp_path_factory.mktemp("pristine") / "checkpoints"
    model, tokenizer, optimizer = _tiny_setup()
    manager = CheckpointManager(directory, keep=3)
    for step in (1, 2):
        _save(manager, model, tokenizer, optimizer, step)
    return directory


def _copy_of(checkpoints, tmp_path):
    return CheckpointManager(shutil.copytree(checkpoints, tmp_path / "checkpoints"), keep=3)


def _damage(path, damage):
    """Flip the middle byte, cut the file to half (or to nothing), or delete it."""
    data = bytearray(path.read_bytes())
    if damage == "flipped":
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
    elif damage == "truncated":
        path.write_bytes(bytes(data[:len(data) // 2]))
    elif damage == "emptied":
        path.write_bytes(b"")
    else:
        path.unlink()
    return len(data)


def _reason(name, damage, size):
    return {"flipped": f"has {name} with another SHA-256 than its manifest's (the file changed after it was "
                       "written: corrupt)",
            "truncated": f"has {name} of {size // 2} bytes, its manifest says {size} (truncated or replaced)",
            "emptied": f"has {name} of 0 bytes, its manifest says {size} (truncated or replaced)",
            "deleted": f"lacks {name}, which its manifest lists"}[damage]


CHECKPOINT_FILES = ["cliplab_tokenizer.json", "config.json", "model.safetensors", "tokenizer.json", "train_state.pt"]


def test_the_damage_below_covers_every_file_a_checkpoint_holds(two_checkpoints):
    assert checkpoint_files(two_checkpoints / "step_0000002") == CHECKPOINT_FILES


@pytest.mark.parametrize("damage", ["flipped", "truncated", "deleted"])
@pytest.mark.parametrize("name", CHECKPOINT_FILES)
def test_a_damaged_file_makes_resume_fall_back_to_the_previous_checkpoint(two_checkpoints, tmp_path, name, damage):
    # Before: a flipped byte in model.safetensors loaded silently (a weight of -0.054 read as -55.09), one
    # in train_state.pt gave NaN steps; a truncated or missing file ended in a traceback.
    manager = _copy_of(two_checkpoints, tmp_path)
    newest = manager.directory / "step_0000002"
    size = _damage(newest / name, damage)
    notes = []
    found = manager.find_resumable(notes.append)
    assert found == manager.directory / "step_0000001"
    assert notes == [f"skipping checkpoint {newest}: it {_reason(name, damage, size)}"]
    assert restore_training_state(found, model=_tiny_setup(seed=3)[0]).step == 1


def test_an_empty_train_state_falls_back_too(two_checkpoints, tmp_path):
    manager = _copy_of(two_checkpoints, tmp_path)
    size = _damage(manager.directory / "step_0000002" / "train_state.pt", "emptied")  # was EOFError
    notes = []
    assert manager.find_resumable(notes.append).name == "step_0000001"
    assert notes == [f"skipping checkpoint {manager.directory / 'step_0000002'}: it "
                     f"{_reason('train_state.pt', 'emptied', size)}"]


@pytest.mark.parametrize("damage, reason", [
    ("deleted", "has no manifest.json: its writer did not finish, or a cliplab without checkpoint manifests wrote it"),
    ("sha", "has cliplab_tokenizer.json with another SHA-256 than its manifest's (the file changed after it was "
            "written: corrupt)"),
])
def test_a_damaged_manifest_falls_back_too(two_checkpoints, tmp_path, damage, reason):
    manager = _copy_of(two_checkpoints, tmp_path)
    manifest = manager.directory / "step_0000002" / "manifest.json"
    if damage == "deleted":
        manifest.unlink()
    else:  # one hex digit of the first file's (cliplab_tokenizer.json's) checksum
        text = manifest.read_text()
        position = text.index('"sha256": "') + len('"sha256": "')
        manifest.write_text(text[:position] + ("0" if text[position] != "0" else "1") + text[position + 1:])
    notes = []
    assert manager.find_resumable(notes.append).name == "step_0000001"
    assert notes == [f"skipping checkpoint {manager.directory / 'step_0000002'}: it {reason}"]


@pytest.mark.parametrize("pointer, problem", [
    (None, "{directory}/latest is missing"),
    (b"", "{directory}/latest holds '', not the name of a step directory"),
    (b"\xffstep\xfe\n", "{directory}/latest holds bytes that are not UTF-8 text"),
    (b"step_0000009\n", "{directory}/latest names step_0000009, which does not exist"),
])
def test_a_bad_latest_pointer_is_reported_and_the_newest_verified_checkpoint_taken(two_checkpoints, tmp_path,
                                                                                  pointer, problem):
    # Before: a traceback each (UnicodeDecodeError for the bytes), and a deleted pointer restarted the run at
    # step 0, whose pruning then deleted the old checkpoints.
    manager = _copy_of(two_checkpoints, tmp_path)
    latest = manager.directory / "latest"
    latest.unlink() if pointer is None else latest.write_bytes(pointer)
    assert manager.latest() is None
    notes = []
    assert manager.find_resumable(notes.append) == manager.directory / "step_0000002"
    assert notes == [problem.format(directory=manager.directory) + "; resuming from the newest checkpoint "
                     "that verifies, step_0000002"]
    assert sorted(path.name for path in manager.step_dirs()) == ["step_0000001", "step_0000002"]


def test_a_newer_checkpoint_than_latest_is_taken(two_checkpoints, tmp_path):
    manager = _copy_of(two_checkpoints, tmp_path)
    (manager.directory / "latest").write_text("step_0000001\n")  # killed after the rename, before the pointer
    notes = []
    assert manager.find_resumable(notes.append).name == "step_0000002"
    assert notes == ["latest names step_0000001; step_0000002 is newer and verifies (a save ended before it moved "
                     "the pointer)"]


def test_no_verified_checkpoint_is_one_error_not_a_fresh_start(two_checkpoints, tmp_path):
    manager = _copy_of(two_checkpoints, tmp_path)
    sizes = [_damage(manager.directory / step / "train_state.pt", "truncated") for step in ("step_0000001",
                                                                                            "step_0000002")]
    with pytest.raises(NoVerifiedCheckpointError) as refused:
        manager.find_resumable(lambda line: None)
    assert str(refused.value) == (
        f"none of the 2 checkpoints in {manager.directory} verifies (step_0000002: "
        f"{_reason('train_state.pt', 'truncated', sizes[1])}; step_0000001: "
        f"{_reason('train_state.pt', 'truncated', sizes[0])}); restore one from a copy, or move "
        f"{manager.directory} away to start the run afresh")
    for step in ("step_0000001", "step_0000002"):
        shutil.rmtree(manager.directory / step)
    with pytest.raises(NoVerifiedCheckpointError, match="holds no step directory although latest shows that "
                       "checkpoints were written \\(.*latest names step_0000002, which does not exist\\)"):
        manager.find_resumable()
    assert CheckpointManager(tmp_path / "none", keep=2).find_resumable() is None  # nothing yet: a fresh start


def test_pruning_removes_only_this_runs_checkpoints_and_never_the_one_just_written(tmp_path):
    model, tokenizer, optimizer = _tiny_setup()
    directory = tmp_path / "checkpoints"
    _save(CheckpointManager(directory, keep=1, run_id="1" * 32), model, tokenizer, optimizer, 1)  # another run's
    (directory / "step_0000002").mkdir()
    (directory / "step_0000002" / "notes.txt").write_text("a user's directory")
    ours = CheckpointManager(directory, keep=2, run_id="2" * 32)
    for step in (3, 4, 5):
        _save(ours, model, tokenizer, optimizer, step)
    assert [path.name for path in ours.step_dirs()] == ["step_0000001", "step_0000002", "step_0000004",
                                                        "step_0000005"]
    _save(CheckpointManager(directory, keep=1, run_id="3" * 32), model, tokenizer, optimizer, 9)  # yet another
    _save(ours, model, tokenizer, optimizer, 6)  # older than step 9, and kept: it is the one just written
    assert [path.name for path in ours.step_dirs()] == ["step_0000001", "step_0000002", "step_0000005",
                                                        "step_0000006", "step_0000009"]


def test_a_save_over_a_damaged_checkpoint_of_its_step_sets_that_one_aside(two_checkpoints, tmp_path):
    manager = _copy_of(two_checkpoints, tmp_path)
    damaged = manager.directory / "step_0000002"
    _damage(damaged / "model.safetensors", "flipped")
    damaged_bytes = (damaged / "model.safetensors").read_bytes()
    model, tokenizer, optimizer = _tiny_setup()
    _save(manager, model, tokenizer, optimizer, 2)
    assert verify_checkpoint(damaged).step == 2
    assert (manager.directory / "rejected_step_0000002" / "model.safetensors").read_bytes() == damaged_bytes


def test_a_full_disk_is_one_line_with_the_path_and_the_size_and_latest_stays_valid(two_checkpoints, tmp_path,
                                                                                   monkeypatch):
    """ENOSPC injected at the write of train_state.pt (a real full disk: the tmpfs test below)."""
    manager = _copy_of(two_checkpoints, tmp_path)

    def disk_full(value, path):
        path.write_bytes(b"\0" * 1000)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(checkpoint_module, "save_torch", disk_full)
    model, tokenizer, optimizer = _tiny_setup()
    with pytest.raises(NoSpaceError) as refused:
        _save(manager, model, tokenizer, optimizer, 3)
    needed = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    assert refused.value.needed_bytes > 3 * needed  # the weights, twice their size in Adam moments, the RNG states
    assert str(refused.value) == (
        f"no space left on device writing {manager.directory / 'step_0000003'}: it needs about "
        f"{format_bytes(refused.value.needed_bytes)}, {format_bytes(refused.value.free_bytes)} free there; latest "
        "still names step_0000002; free space (or train with --logs on a larger disk) and continue with --resume "
        "latest")
    assert manager.latest().name == "step_0000002" and not list(manager.directory.glob(".tmp-*"))
    assert manager.find_resumable(lambda line: pytest.fail(line)).name == "step_0000002"


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs: room for one checkpoint of the small test model (0.7 MB), not for two."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); the ENOSPC test above covers the path")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_a_run_on_a_full_disk_stops_with_one_line_and_resuming_there_leaves_nothing_behind(small_disk, capsys):
    # Before: torch's "unexpected pos ..." traceback; a resume on the full disk left a 0-byte metrics.jsonl.tmp.
    from cliplab.cli import main

    argv = ["train", "--logs", str(small_disk), "--name", "run", "--max-steps", "4", "--save-every-steps", "2",
            "--keep-checkpoints", "1", "--batch-size", "8", "--workers", "0", "--threads", "1", "--no-progress-bar",
            "--no-tensorboard", "--log-every-n-steps", "1", "--train-num-samples", "64", "--set",
            "eval.eval_at_end=false", "--set", "model.overrides={vision.width: 16, text.width: 32, text.heads: 2, "
            "text.layers: 1, text.context_length: 20, embed_dim: 16}"]
    checkpoints = small_disk / "run" / "checkpoints"
    expected = re.compile(
        f"cliplab train: error: no space left on device writing {re.escape(str(checkpoints / 'step_0000004'))}: it "
        r"needs about \d+\.\d kB, \d+\.\d kB free there; latest still names step_0000002; free space \(or train "
        r"with --logs on a larger disk\) and continue with --resume latest\n")
    for attempt in (argv, argv + ["--resume", "latest"]):
        assert main(attempt) == 2
        assert expected.fullmatch(capsys.readouterr().err)
        assert CheckpointManager(checkpoints, keep=1).find_resumable().name == "step_0000002"
        assert sorted(path.name for path in checkpoints.iterdir()) == ["latest", "step_0000002"]
        assert not list((small_disk / "run").glob("*.tmp")) and not list((small_disk / "run").glob(".tmp-*"))
        lines = (small_disk / "run" / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in lines if '"train"' in line] == [1, 2, 3, 4]


def test_a_sharded_writer_publishes_through_stage_and_publish_and_every_shard_is_verified(tmp_path):
    """The DCP shape (docs/INTERFACES.md): ranks' shard files and a hidden `.metadata`, nested
    too, written into the staging directory; `publish` lists them all and verification covers each."""
    manager = CheckpointManager(tmp_path / "checkpoints", keep=2)
    shards = {".metadata": b"plan", "__0_0.distcp": b"rank 0" * 100, "__1_0.distcp": b"rank 1" * 100,
              "extra/state_1.pt": b"nested"}
    staging = manager.stage(5)
    for name, data in shards.items():
        (staging / name).parent.mkdir(parents=True, exist_ok=True)
        (staging / name).write_bytes(data)
    final = manager.publish(staging, 5)
    manifest = verify_checkpoint(final)
    assert (final.name, manager.latest(), manifest.step, manifest.run_id) == ("step_0000005", final, 5, manager.run_id)
    assert {name: (record.size, record.sha256) for name, record in manifest.files.items()} == {
        name: (len(data), hashlib.sha256(data).hexdigest()) for name, data in shards.items()}
    (final / "__1_0.distcp").write_bytes(b"rank 1" * 99 + b"rank 2")
    with pytest.raises(UnverifiedCheckpointError, match="has __1_0.distcp with another SHA-256"):
        verify_checkpoint(final)


# --- resuming from a hostile checkpoint ----------------------------------------------------------

def _train_argv(logs, name, *extra, steps=3):
    return ["train", "--logs", str(logs), "--name", name, "--max-steps", str(steps), "--save-every-steps", "2",
            "--batch-size", "8", "--workers", "0", "--threads", "1", "--no-progress-bar", "--no-tensorboard",
            "--train-num-samples", "64", "--set", "eval.eval_at_end=false", "--set",
            "model.overrides={vision.width: 16, text.width: 32, text.heads: 2, text.layers: 1, "
            "text.context_length: 20, embed_dim: 16}", *extra]


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A run stopped after its checkpoint of step 2 (of 3): what --resume continues."""
    from cliplab.cli import main

    logs = tmp_path_factory.mktemp("stopped")
    assert main(_train_argv(logs, "run", steps=2)) == 0
    return logs / "run"


RESUMED_FILES = ["train_state.pt", "model.safetensors", "config.json", "cliplab_tokenizer.json", "tokenizer.json"]
UNREAD_BY_RESUME = {"config.json"}  # the bundle's model config: resume builds the model from the run's


@pytest.mark.parametrize("resume", ["latest", "PATH"])
@pytest.mark.parametrize("name", RESUMED_FILES)
def test_resuming_from_a_code_running_pickle_runs_nothing_and_is_one_line(stopped_run, tmp_path, capsys, resume,
                                                                          name):
    """Each file of the checkpoint replaced by a pickle that would create a marker, the manifest
    recomputed (as anyone can): --resume latest of the run, and --resume PATH from another run.
    Before: train_state.pt's ran on torch.load(weights_only=False), then resume went on."""
    from cliplab.cli import main
    from hostile_files import replace_with_pickle, republish

    run = shutil.copytree(stopped_run, tmp_path / "logs" / "run")
    step = run / "checkpoints" / "step_0000002"
    marker = tmp_path / "ran"
    replace_with_pickle(step / name, marker)
    republish(step)
    capsys.readouterr()
    longer = ("--allow-config-change", "loop.max_steps")  # the stopped run had 2 steps; this one 3
    argv = (_train_argv(tmp_path / "logs", "run", "--resume", "latest", *longer) if resume == "latest"
            else _train_argv(tmp_path / "logs", "other", "--resume", str(step), *longer))
    status = main(argv)
    err = capsys.readouterr().err
    assert not marker.exists()
    if name in UNREAD_BY_RESUME:
        assert status == 0, err
        return
    assert status == 2 and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("cliplab train: error: ") and str(step / name) in err, err
