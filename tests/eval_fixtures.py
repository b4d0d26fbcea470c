"""Checkpoints for the eval and CLI tests, made by real short training runs once per test session.

`trained_run` runs `cliplab.train.train` on a shrunken "tiny" CLIP for two short epochs of
Fashion-MNIST with a zero-shot and retrieval evaluation after each, so its run directory holds
everything the loop writes (config.json, metrics.jsonl, summary.json, checkpoints/latest and a
step directory with train_state.pt); the step's weights are also re-saved as a plain bundle.
`coca_run` is the run directory of a few training steps of a shrunken "tiny-coca". `csv_run` is a
run of 2 steps on a manifest of colour images, evaluated on another (no Fashion-MNIST needed).

Both skip when the Fashion-MNIST files are not installed (the Debian package dataset-fashion-mnist),
as tests/test_data_fashion_mnist.py does. Import the fixtures into a test module
(`from eval_fixtures import trained_run`); the runs are memoised here, so every module shares them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from cliplab.data.fashion_mnist_files import SYSTEM_DIR, split_files_in

EMBED_DIM = 32
# Small enough to train and evaluate in a few seconds on a shared CPU.
MODEL_OVERRIDES = {"embed_dim": EMBED_DIM, "vision.width": 32, "vision.layers": 1, "text.width": 32,
                   "text.layers": 1, "text.heads": 2}
TRAIN_SAMPLES = 80
BATCH_SIZE = 16
EPOCHS = 2
STEPS = EPOCHS * TRAIN_SAMPLES // BATCH_SIZE
NUM_TEST_IMAGES = 20
_BUILT: dict[str, Any] = {}


@dataclass(frozen=True)
class TrainedRun:
    """run_dir: the training run directory; step_dir: its latest checkpoint (step STEPS); summary: its
    summary.json; bundle: a bundle directory with the same weights and tokenizer as `step_dir`;
    images_dir: PNGs of the first NUM_TEST_IMAGES Fashion-MNIST test images in class-named
    sub-folders ("ankle_boot/test_000.png"); image_paths / labels: those PNGs and their labels."""

    run_dir: Path
    step_dir: Path
    summary: dict[str, Any]
    bundle: Path
    images_dir: Path
    image_paths: tuple[Path, ...]
    labels: tuple[int, ...]


def require_fashion_mnist() -> None:
    """Skip the calling test when the Fashion-MNIST idx files are not installed (no download in tests)."""
    if split_files_in(SYSTEM_DIR, "train") is None or split_files_in(SYSTEM_DIR, "test") is None:
        pytest.skip(f"dataset-fashion-mnist not installed: the Fashion-MNIST files are absent from {SYSTEM_DIR}")


def _train(config) -> Path:
    """Train `config`; restore the torch threads the loop sets, for the tests that run afterwards."""
    from cliplab.train import train

    threads = torch.get_num_threads()
    try:
        return train(config).run_dir
    finally:
        torch.set_num_threads(threads)


def _train_clip_run(logs: Path) -> Path:
    from cliplab.train import smoke_config

    config = smoke_config(logs=str(logs), name="clip", batch_size=BATCH_SIZE, **MODEL_OVERRIDES)
    config.data.train_num_samples = TRAIN_SAMPLES
    config.data.train_data = config.data.val_data = str(SYSTEM_DIR)
    config.loop.epochs, config.loop.max_steps = EPOCHS, None
    config.eval.zeroshot_frequency = 1  # an evaluation after each epoch, so plots over evaluations have two points
    config.eval.zeroshot_num_samples, config.eval.retrieval_num_samples = 100, 50
    return _train(config)


def _write_test_images(images_dir: Path) -> tuple[list[Path], list[int]]:
    from cliplab.data import FASHION_MNIST_CLASSNAMES, FashionMnistDataset

    test_set = FashionMnistDataset(split="test", data_dir=SYSTEM_DIR, download=False)
    paths, labels = [], []
    for index in range(NUM_TEST_IMAGES):
        label = int(test_set.labels[index])
        folder = images_dir / FASHION_MNIST_CLASSNAMES[label].replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"test_{index:03d}.png"
        Image.fromarray(test_set.images[index]).save(path)
        paths.append(path)
        labels.append(label)
    return paths, labels


def _build_trained_run(root: Path) -> TrainedRun:
    import cliplab

    run_dir = _train_clip_run(root / "logs")
    summary = json.loads((run_dir / "summary.json").read_text())
    step_dir = Path(summary["checkpoint"])
    model, _, tokenizer = cliplab.load(step_dir)
    bundle = cliplab.save(model, tokenizer, root / "bundle")
    paths, labels = _write_test_images(root / "images")
    return TrainedRun(run_dir=run_dir, step_dir=step_dir, summary=summary, bundle=bundle,
                      images_dir=root / "images", image_paths=tuple(paths), labels=tuple(labels))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> TrainedRun:
    require_fashion_mnist()
    if "trained_run" not in _BUILT:
        _BUILT["trained_run"] = _build_trained_run(tmp_path_factory.mktemp("trained_run"))
    return _BUILT["trained_run"]


@pytest.fixture(scope="session")
def coca_run(tmp_path_factory) -> Path:
    """The run directory of 3 training steps of a shrunken tiny-coca (no evaluation)."""
    require_fashion_mnist()
    if "coca_run" not in _BUILT:
        from cliplab.train import EvalConfig, smoke_config

        config = smoke_config(logs=str(tmp_path_factory.mktemp("coca_run")), name="coca", model="tiny-coca",
                              steps=3, batch_size=BATCH_SIZE, **MODEL_OVERRIDES,
                              **{"decoder.layers": 1, "decoder.heads": 2})
        config.data.train_data = str(SYSTEM_DIR)
        config.eval = EvalConfig(eval_at_end=False)
        _BUILT["coca_run"] = _train(config)
    return _BUILT["coca_run"]


@dataclass(frozen=True)
class CsvRun:
    """run_dir: a run trained on train_manifest (16 rows) for 2 steps, evaluated at the end on
    val_manifest (12 rows, captions "val caption i", no labels), with a checkpoint at the end."""

    run_dir: Path
    train_manifest: Path
    val_manifest: Path


def _build_csv_run(root: Path) -> CsvRun:
    from cliplab.cli import main
    from data_fixtures import make_manifest

    train = make_manifest(root / "train", 16)
    val = make_manifest(root / "val", 12)
    val.write_text(val.read_text().replace("\tcaption ", "\tval caption "))
    threads = torch.get_num_threads()
    try:
        assert main([str(arg) for arg in (
            "train", "--logs", root / "logs", "--name", "csv", "--dataset-type", "csv", "--train-data", train,
            "--val-data", val, "--max-steps", 2, "--batch-size", 8, "--workers", 0, "--threads", 1, "--warmup", 1,
            "--no-progress-bar", "--no-tensorboard", "--set", "model.overrides={vision.width: 16, text.width: 32, "
            "text.heads: 2, text.layers: 1, text.context_length: 20, embed_dim: 16}")]) == 0
    finally:
        torch.set_num_threads(threads)
    return CsvRun(run_dir=root / "logs" / "csv", train_manifest=train, val_manifest=val)


@pytest.fixture(scope="session")
def csv_run(tmp_path_factory) -> CsvRun:
    if "csv_run" not in _BUILT:
        _BUILT["csv_run"] = _build_csv_run(tmp_path_factory.mktemp("csv_run"))
    return _BUILT["csv_run"]


def run_cli(argv: list[str]) -> int:
    """`cliplab ARGV` in-process; returns the exit code."""
    from cliplab.cli import main

    return main([str(arg) for arg in argv])


def assert_valid_png(path: Path, min_bytes: int = 5000) -> None:
    """PNG signature, more than `min_bytes` bytes, and PIL decodes it."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert len(data) > min_bytes, f"{path} is only {len(data)} bytes"
    with Image.open(path) as image:
        image.load()
        assert image.width > 100 and image.height > 100
