"""Where a run's scalar metrics go besides metrics.jsonl: TensorBoard event files and Weights & Biases.

Every sink receives the same scalars: each numeric top-level value of a metrics.jsonl record, named
`<kind>/<key>` (`train/loss`, `eval/image_to_text_R@1`, `data/skipped_samples`) at the record's
step (`scalars_of`). `--report-to tensorboard,wandb` (open_clip's flag) chooses them.

W&B: `wandb.init(project=logging.wandb_project, name=<run name>, dir=<run dir>, config=<the run's
config>)`; its files go to `<run>/wandb/`. WANDB_MODE=offline (or `wandb offline`) keeps them on
disk for `wandb sync` later. Each attempt of a resumed run is its own W&B run: W&B drops the steps
of a run that go backwards, and a resumed run restarts at its checkpoint's step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Protocol

from cliplab.eval.run_layout import TENSORBOARD_DIR


def scalars_of(record: Mapping[str, Any]) -> dict[str, float]:
    """`{"<kind>/<key>": value}` for every int or float value of `record` but its step."""
    return {f"{record['kind']}/{key}": value for key, value in record.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("step", "kind")}


class ScalarSink(Protocol):
    def log(self, scalars: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class TensorBoardSink:
    """Scalars as TensorBoard event files in `<run>/tensorboard/`. A resumed run (resume_step c)
    tells TensorBoard to drop what an earlier attempt logged after step c."""

    def __init__(self, run_dir: Path, *, resume_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        purge = None if resume_step is None else resume_step + 1
        self._writer = SummaryWriter(str(Path(run_dir) / TENSORBOARD_DIR), purge_step=purge)

    def log(self, scalars: dict[str, float], step: int) -> None:
        for name, value in scalars.items():
            self._writer.add_scalar(name, value, step)

    def close(self) -> None:
        self._writer.close()


class WandbSink:
    """Scalars as the history of a W&B run (see the module docstring); the wandb package is the
    `wandb` extra, checked when the config is built (`LoggingConfig`)."""

    def __init__(self, run_dir: Path, *, project: str, config: dict[str, Any]):
        import wandb

        self._run = wandb.init(project=project, name=Path(run_dir).name, dir=str(run_dir), config=config,
                               settings=wandb.Settings(console="off", silent=True, x_disable_stats=True))

    def log(self, scalars: dict[str, float], step: int) -> None:
        self._run.log(scalars, step=step)

    def close(self) -> None:
        self._run.finish()
