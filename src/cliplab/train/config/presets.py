"""Ready-made configs: `smoke_config`, a run of a few steps on a small Fashion-MNIST subset.

Used by tests (and other packages' tests) that need a real run directory and checkpoint quickly.
"""

from __future__ import annotations

from cliplab.data import DataConfig
from cliplab.train.config import (CheckpointConfig, EvalConfig, LoggingConfig, LoopConfig, ModelSetupConfig,
                                  OptimConfig, TrainConfig)


def smoke_config(*, logs: str, name: str = "smoke", model: str = "tiny", steps: int = 4, batch_size: int = 16,
                 workers: int = 0, **model_overrides) -> TrainConfig:
    """`steps` steps of `model` (overrides shrink it further) on 512 Fashion-MNIST samples,
    evaluated on 200 test images, one checkpoint at the end, no progress bar. Seconds on a CPU."""
    return TrainConfig(
        model=ModelSetupConfig(name=model, overrides=dict(model_overrides) or None),
        data=DataConfig(train_num_samples=512, workers=workers),
        loop=LoopConfig(epochs=1, max_steps=steps, batch_size=batch_size, threads=1),
        optim=OptimConfig(lr=1e-3, warmup=2),
        checkpoint=CheckpointConfig(save_frequency=0),
        logging=LoggingConfig(logs=logs, name=name, log_every_n_steps=1, tensorboard=False, progress_bar=False),
        eval=EvalConfig(zeroshot_num_samples=200, retrieval_num_samples=100, batch_size=100),
    )
