"""What checkpoint manifests cost: SHA-256 of every file at save, and verification at resume.

    python benchmarks/checkpoint_manifest.py     # section checkpoint_manifest (about a minute)

The default run's model (the slimmed tiny CLIP) with its AdamW state after one step is saved
REPEATS times with `CheckpointManager.save` (bundle, train_state.pt, fsyncs, manifest, rename,
pointer); in the same process, on the same files, `build_manifest` (the part the manifest adds to a
save) and `verify_checkpoint` (what resume adds) are timed on their own. Medians of REPEATS. A
last row times SHA-256 alone on 256 MiB, for scaling to larger checkpoints.
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import format_table, write_section  # noqa: E402

REPEATS = 15


def _median_seconds(action, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _default_run_parts():
    import torch

    from cliplab.data.fashion_mnist import fashion_mnist_caption_corpus
    from cliplab.data.tokenizer import Tokenizer
    from cliplab.train.config import OptimConfig, TrainConfig
    from cliplab.train.setup.model import build_training_model
    from cliplab.train.step.optim import build_optimizer

    torch.manual_seed(0)
    config = TrainConfig()
    model = build_training_model(config.model, torch.device("cpu"))
    text = model.config.text
    tokenizer = Tokenizer.train(fashion_mnist_caption_corpus(), vocab_size=text.vocab_size,
                                context_length=text.context_length)
    optimizer = build_optimizer(model, OptimConfig())
    size = model.config.vision.image_size
    output = model(torch.randn(8, 3, size, size), tokenizer(["a photo of a bag."] * 8))
    (output["image_features"] @ output["text_features"].T).sum().backward()
    optimizer.step()
    return model, tokenizer, optimizer


def main() -> None:
    from cliplab.checkpoint_files.manifest import build_manifest, verify_checkpoint
    from cliplab.train.checkpointing.manager import CheckpointManager
    from cliplab.train.state import TrainState

    model, tokenizer, optimizer = _default_run_parts()
    with tempfile.TemporaryDirectory() as directory:
        manager = CheckpointManager(Path(directory) / "checkpoints", keep=1)
        steps = iter(range(1, 10 * REPEATS))

        def save():
            return manager.save(model=model, tokenizer=tokenizer, optimizer=optimizer, scaler=None,
                                state=TrainState(step=next(steps)), config={})

        save()  # warm-up
        save_s = _median_seconds(save)
        checkpoint = manager.latest()
        manifest_s = _median_seconds(lambda: build_manifest(checkpoint, step=0, run_id=None))
        verify_s = _median_seconds(lambda: verify_checkpoint(checkpoint))
        size_mb = verify_checkpoint(checkpoint).total_bytes / 2**20
    block = b"\0" * (256 << 20)
    sha_s = _median_seconds(lambda: hashlib.sha256(block).digest(), repeats=5)
    rows = [
        ["save a checkpoint (all of it, manifest included)", f"{size_mb:.2f}", f"{1000 * save_s:.1f}", "100%"],
        ["  of which: the manifest (SHA-256 of every file)", f"{size_mb:.2f}", f"{1000 * manifest_s:.1f}",
         f"{100 * manifest_s / save_s:.1f}%"],
        ["verify at resume (sizes, then SHA-256)", f"{size_mb:.2f}", f"{1000 * verify_s:.1f}", ""],
        ["SHA-256 alone, 256 MiB in memory", "256", f"{1000 * sha_s:.0f}", f"{256 / sha_s:.0f} MiB/s"],
    ]
    body = format_table(["what", "MiB", "ms (median)", "share / rate"], rows)
    body += (f"\n\nThe default run's checkpoint (model.safetensors, train_state.pt with AdamW moments, config and "
             f"tokenizer) is {size_mb:.1f} MiB; its manifest adds {1000 * manifest_s:.1f} ms to a "
             f"{1000 * save_s:.0f} ms save. At {256 / sha_s:.0f} MiB/s a checkpoint of S MiB costs about "
             "S / that rate seconds more per save and per resume.")
    print(body)
    write_section("checkpoint_manifest", "Checkpoint manifests: cost of SHA-256 at save and at resume", body)


if __name__ == "__main__":
    main()
