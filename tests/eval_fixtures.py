"""Checkpoints for the eval and CLI tests, built once per test session.

`trained_run` trains the registry's "tiny" CLIP for a few steps on Fashion-MNIST (a local symmetric
cross-entropy), then lays it out three ways: a bundle directory, a training run directory with
`checkpoints/step_XXXXXXX/` (bundle + train_state.pt), `checkpoints/latest`, config.json, a
realistic metrics.jsonl and summary.json. `coca_bundle` is an untrained tiny CoCa bundle.

Import the fixtures into a test module (`from eval_fixtures import trained_run`); the artifacts are
memoised here, so every module shares one build.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

TRAIN_STEPS = 25
BATCH_SIZE = 10  # one image per Fashion-MNIST class
STEP = TRAIN_STEPS
# Small enough to train and evaluate in seconds on a shared CPU.
MODEL_OVERRIDES = {"embed_dim": 32, "vision": {"width": 32, "layers": 1},
                   "text": {"width": 32, "layers": 1, "heads": 2}}
_BUILT: dict[str, object] = {}


@dataclass(frozen=True)
class TrainedRun:
    """bundle: a bundle directory; run_dir: a run directory whose latest checkpoint is `step_dir`
    (the same weights as `bundle`); images_dir: PNGs of the first 20 Fashion-MNIST test images in
    class-named sub-folders; image_paths / labels: those PNGs and their labels."""

    bundle: Path
    run_dir: Path
    step_dir: Path
    images_dir: Path
    image_paths: tuple[Path, ...]
    labels: tuple[int, ...]


def _tokenizer():
    from cliplab.data import fashion_mnist_caption_corpus
    from cliplab.data.tokenizer import Tokenizer

    return Tokenizer.train(fashion_mnist_caption_corpus(), vocab_size=1024, context_length=32)


def _train_tiny_clip(tokenizer):
    from cliplab.data import FASHION_MNIST_CLASSNAMES, FASHION_MNIST_TEMPLATES, FashionMnistDataset
    from cliplab.data.transforms import images_uint8_to_tensor
    from cliplab.models import create_model

    torch.manual_seed(0)
    model = create_model("tiny", **MODEL_OVERRIDES)
    dataset = FashionMnistDataset(split="train", download=False)
    members = [np.flatnonzero(dataset.labels == label) for label in range(len(FASHION_MNIST_CLASSNAMES))]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = np.random.default_rng(0)
    targets = torch.arange(len(FASHION_MNIST_CLASSNAMES))
    losses = []
    for _ in range(TRAIN_STEPS):
        # one image per class, so that each image's caption is the only right one in the batch
        indices = [int(generator.choice(rows)) for rows in members]
        images = images_uint8_to_tensor(np.array(dataset.images[indices]), model.config.preprocess)
        captions = [FASHION_MNIST_TEMPLATES[generator.integers(len(FASHION_MNIST_TEMPLATES))].format(name)
                    for name in FASHION_MNIST_CLASSNAMES]
        output = model(images, tokenizer(captions))
        logits = output["logit_scale"] * F.normalize(output["image_features"], dim=-1) @ F.normalize(
            output["text_features"], dim=-1).T
        loss = (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return model.eval(), losses


def _metrics_lines(losses: list[float]) -> list[dict]:
    classnames = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                  "ankle boot"]
    lines = []
    for step, loss in enumerate(losses, start=1):
        lines.append({"kind": "train", "step": step, "epoch": 0, "samples_seen": step * BATCH_SIZE,
                      "lr": 2e-3 * min(1.0, step / 10), "loss": loss, "loss/contrastive_loss": loss,
                      "logit_scale": 14.29 + 0.01 * step, "i2t_accuracy": min(1.0, 0.1 + step / 50),
                      "t2i_accuracy": min(1.0, 0.08 + step / 60), "local_batch_size": BATCH_SIZE,
                      "global_batch_size": BATCH_SIZE, "data_wait_s": 0.001, "samples_per_s": 900.0,
                      "skipped_samples": 0, "nonfinite_skips": 0})
        if step % 10 == 0 or step == len(losses):
            confusion = (np.eye(10, dtype=int) * (step // 2) + 1).tolist()
            lines.append({"kind": "eval", "step": step, "epoch": 0, "zero_shot_top1": 0.3 + step / 200,
                          "zero_shot_top5": 0.7 + step / 400,
                          "zero_shot_per_class": {name: 0.5 for name in classnames},
                          "confusion_matrix": confusion, "classnames": classnames,
                          "image_to_text_R@1": 0.05 + step / 1000, "text_to_image_R@1": 0.04 + step / 1000,
                          "image_to_text_R@5": 0.2, "text_to_image_R@5": 0.18})
    return lines


def _build(tmp_path_factory) -> TrainedRun:
    from cliplab.bundle import save
    from cliplab.data import FASHION_MNIST_CLASSNAMES, FashionMnistDataset

    root = tmp_path_factory.mktemp("eval_checkpoints")
    tokenizer = _tokenizer()
    model, losses = _train_tiny_clip(tokenizer)
    bundle = save(model, tokenizer, root / "bundle")

    run_dir = root / "run"
    step_dir = save(model, tokenizer, run_dir / "checkpoints" / f"step_{STEP:07d}")
    torch.save({"train_state": {"step": STEP}}, step_dir / "train_state.pt")
    (run_dir / "checkpoints" / "latest").write_text(step_dir.name + "\n")
    (run_dir / "config.json").write_text(json.dumps({"model": {"name": "tiny"}, "data": {}}))
    lines = _metrics_lines(losses)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    last_eval = [line for line in lines if line["kind"] == "eval"][-1]
    summary = {"steps": STEP, "samples_seen": STEP * BATCH_SIZE, "final_loss": losses[-1], "wall_time_s": 12.5,
               **{key: value for key, value in last_eval.items() if key not in ("kind", "step", "epoch")}}
    (run_dir / "summary.json").write_text(json.dumps(summary))

    test_set = FashionMnistDataset(split="test", download=False)
    images_dir = root / "images"
    paths, labels = [], []
    for index in range(20):
        label = int(test_set.labels[index])
        folder = images_dir / FASHION_MNIST_CLASSNAMES[label].replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"test_{index:03d}.png"
        Image.fromarray(test_set.images[index]).save(path)
        paths.append(path)
        labels.append(label)
    return TrainedRun(bundle=bundle, run_dir=run_dir, step_dir=step_dir, images_dir=images_dir,
                      image_paths=tuple(paths), labels=tuple(labels))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> TrainedRun:
    if "trained_run" not in _BUILT:
        _BUILT["trained_run"] = _build(tmp_path_factory)
    return _BUILT["trained_run"]


@pytest.fixture(scope="session")
def coca_bundle(tmp_path_factory) -> Path:
    if "coca_bundle" not in _BUILT:
        from cliplab.bundle import save
        from cliplab.models import create_model

        torch.manual_seed(0)
        model = create_model("tiny-coca", **MODEL_OVERRIDES, decoder={"layers": 1, "heads": 2})
        _BUILT["coca_bundle"] = save(model, _tokenizer(),
                                     tmp_path_factory.mktemp("coca") / "bundle")
    return _BUILT["coca_bundle"]


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
