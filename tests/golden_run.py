"""The golden-trajectory run: 50 deterministic CPU steps of the shrunken tiny model, and its losses.

Shared by tests/test_train_golden.py (which compares) and scripts/make_golden_losses.py (which
writes tests/fixtures/golden_losses.json). Text dropout is on so the trajectory also pins the
training RNG stream, not just the arithmetic.
"""

import json
from pathlib import Path

from cliplab.data import DataConfig
from cliplab.train import train
from cliplab.train.config import (CheckpointConfig, EvalConfig, LoggingConfig, LoopConfig, ModelSetupConfig,
                                  OptimConfig, TrainConfig)

GOLDEN_FILE = Path(__file__).parent / "fixtures" / "golden_losses.json"
STEPS = 50
REGENERATE = "python scripts/make_golden_losses.py"
# Spelled out rather than taken from train_helpers / smoke_config, so that retuning those helpers
# does not move the golden run; library defaults (AdamW betas, weight decay, ...) stay live.
MODEL_OVERRIDES = {"vision.width": 16, "text.width": 32, "text.heads": 2, "text.layers": 1,
                   "text.context_length": 20, "embed_dim": 16, "text.dropout": 0.1}


def golden_config(logs) -> TrainConfig:
    """The tiny model shrunken further, batch 8, 128 samples an epoch (16 steps: the run crosses
    epoch boundaries), one thread, deterministic, no data workers, no evaluation."""
    return TrainConfig(
        model=ModelSetupConfig(name="tiny", overrides=dict(MODEL_OVERRIDES)),
        data=DataConfig(train_num_samples=128, workers=0),
        loop=LoopConfig(epochs=10, max_steps=STEPS, batch_size=8, seed=0, threads=1, deterministic=True),
        optim=OptimConfig(lr=1e-3, warmup=2),
        checkpoint=CheckpointConfig(save_frequency=0),
        logging=LoggingConfig(logs=str(logs), name="golden", log_every_n_steps=1, tensorboard=False,
                              progress_bar=False),
        eval=EvalConfig(eval_at_end=False),
    )


def golden_losses(logs) -> list[float]:
    """The logged loss of steps 1..STEPS of the golden run, as Python floats (the fp32 values, exactly)."""
    return losses_of_run(train(golden_config(logs)).run_dir)


def losses_of_run(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    losses = {record["step"]: record["loss"] for record in map(json.loads, lines) if record["kind"] == "train"}
    assert sorted(losses) == list(range(1, STEPS + 1)), sorted(losses)
    return [losses[step] for step in range(1, STEPS + 1)]


def write_golden(losses: list[float], path: Path = GOLDEN_FILE) -> None:
    """One float per line; json writes repr(float), which reads back to the identical value."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[\n" + ",\n".join(json.dumps(loss) for loss in losses) + "\n]\n")
