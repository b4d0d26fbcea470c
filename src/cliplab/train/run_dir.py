"""The run directory `<logs>/<name>/` and which checkpoint (if any) a run resumes from."""

from __future__ import annotations

import datetime
from pathlib import Path
from cliplab.distributed.agreement import run_on_main
from cliplab.eval.run_layout import CHECKPOINTS_DIR, METRICS_FILE
from cliplab.train.checkpoint import CheckpointManager
from cliplab.train.config import ConfigError, TrainConfig


def default_run_name(config: TrainConfig) -> str:
    """open_clip's pattern: date-time, model, lr, batch size, e.g. 2026_11_23-09_30_00-model_tiny-lr_0.002-b_256."""
    stamp = datetime.datetime.now().strftime("%Y_%m_%d-%H_%M_%S")
    model = config.model.label.replace("/", "-")
    return f"{stamp}-model_{model}-lr_{config.optim.lr:g}-b_{config.loop.batch_size}"


def _create_run_dir(config: TrainConfig) -> str:
    """On the main process: the run's name, its directory created; ConfigError when refused."""
    name = config.logging.name or default_run_name(config)
    run_dir = Path(config.logging.logs) / name
    if config.checkpoint.resume is None and ((run_dir / METRICS_FILE).exists()
                                             or (run_dir / CHECKPOINTS_DIR).exists()):
        raise ConfigError("logging.name", name, f"names an existing run ({run_dir}); use --resume latest "
                          "to continue it or choose another --name")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError("logging.logs", config.logging.logs, f"must be a directory cliplab can create "
                          f"the run directory in ({error})") from None
    return name


def prepare_run_dir(config: TrainConfig) -> Path:
    """Create (main process) and return the run directory; the same path on every rank.

    A fresh run refuses an existing directory that already holds checkpoints or metrics (as open_clip
    refuses an existing experiment name): pass --resume latest to continue it, or another --name.
    The main process decides (`run_on_main`), so a refusal raises the same ConfigError on every
    rank instead of leaving them waiting for the main process. A collective.
    """
    return Path(config.logging.logs) / run_on_main(lambda: _create_run_dir(config))


def resolve_resume(resume: str | None, checkpoints: CheckpointManager) -> Path | None:
    """None (fresh start), the run's latest complete checkpoint, or an explicit checkpoint directory.

    'latest' with no checkpoint yet starts fresh: torchrun restarts every worker with the same
    command line, and the first attempt has nothing to resume.
    """
    if resume is None:
        return None
    if resume == "latest":
        return checkpoints.latest()
    path = Path(resume)
    if path.is_file() and path.name == "latest":
        path = path.parent / path.read_text().strip()
    if not path.is_dir():
        raise ConfigError("checkpoint.resume", resume, "must be 'latest' or an existing checkpoint directory")
    return path
