"""The metric sinks: every sink gets the same scalars at the same steps. The W&B test runs a real
offline W&B run (WANDB_MODE=offline) and reads its records back from the run's own `.wandb` file."""

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from cliplab.train.config import ConfigError, LoggingConfig
from cliplab.train.metrics.sinks import scalars_of

ROOT = Path(__file__).resolve().parent.parent


def test_scalars_are_the_numeric_values_named_by_kind():
    record = {"kind": "train", "step": 3, "epoch": 0, "loss": 2.5, "loss/contrastive_loss": 2.5, "grad_norm": None,
              "skipped_examples": ["x"], "flag": True}
    assert scalars_of(record) == {"train/epoch": 0, "train/loss": 2.5, "train/loss/contrastive_loss": 2.5}


def test_wandb_without_the_package_is_a_config_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "wandb" else real(name, *rest))
    with pytest.raises(ConfigError, match=r"'wandb' needs the wandb package \(pip install 'cliplab\[wandb\]'\)"):
        LoggingConfig(wandb=True)


def _wandb_file_records(path: Path):
    """The protobuf records of a `.wandb` file: a 7-byte header (":W&B", magic, version), then a
    LevelDB-style log of 32 KiB blocks whose records have a 7-byte header (crc32, length, type:
    1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2

    data, position, block, pending = path.read_bytes(), 7, 32768, b""
    assert data[:4] == b":W&B"
    while position + 7 <= len(data):
        room = block - position % block
        if room < 7:  # a block's tail too short for a header is padding
            position += room
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        pending += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _wandb_scalars(run_dir: Path) -> dict[tuple[str, int], float]:
    (path,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    scalars = {}
    for record in _wandb_file_records(path):
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                if not key.startswith("_"):  # W&B's own _step, _runtime, _timestamp
                    scalars[(key, record.history.step.num)] = json.loads(item.value_json)
    return scalars


def _tensorboard_scalars(run_dir: Path) -> dict[tuple[str, int], float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    return {(tag, event.step): event.value for tag in events.Tags()["scalars"] for event in events.Scalars(tag)}


def test_wandb_logs_the_same_records_as_tensorboard(tmp_path):
    pytest.importorskip("wandb")  # the `wandb` extra, installed by scripts/setup.sh
    from data_fixtures import make_manifest

    manifest = make_manifest(tmp_path / "data", 16)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "cliplab", "train", "--logs", str(tmp_path / "logs"), "--name", "run",
            "--dataset-type", "csv", "--train-data", str(manifest), "--val-data", str(manifest), "--epochs", "1",
            "--batch-size", "8", "--workers", "0", "--threads", "1", "--warmup", "1", "--log-every-n-steps", "1",
            "--report-to", "tensorboard,wandb", "--wandb-project-name", "cliplab-test", "--set",
            "model.overrides={vision.width: 16, text.width: 32, text.heads: 2, text.layers: 1, "
            "text.context_length: 20, embed_dim: 16}"]
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    run_dir = tmp_path / "logs" / "run"
    tensorboard, wandb = _tensorboard_scalars(run_dir), _wandb_scalars(run_dir)
    assert wandb.keys() == tensorboard.keys()
    for key, value in tensorboard.items():
        assert wandb[key] == pytest.approx(value, rel=1e-6, abs=1e-7), key  # TensorBoard keeps float32
    names = {name for name, _ in wandb}
    assert {"train/loss", "train/lr", "eval/image_to_text_R@1", "data/skipped_samples"} <= names
    assert sorted(step for name, step in wandb if name == "train/loss") == [1, 2]  # 16 samples, batches of 8
