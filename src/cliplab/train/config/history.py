"""A run's config across its attempts: what a resume may change, what it may not, and the record.

A resumed attempt compares its config with the one in force at the checkpoint it resumes: the
latest record of that run's `config_history.jsonl` at or before the checkpoint's step, else the
run's `config.json`, which the first attempt writes and no resume replaces. A changed setting
that affects what is trained (the learning rate, the schedule's length, the seed, the data, the
model, the loss...) stops the run at start-up with one line listing each change, old -> new,
unless `--allow-config-change` (`checkpoint.allow_config_change`) names it, or a section or key
above it. The settings in FREE_ON_RESUME, which change how a run reports, evaluates, saves or
spreads its work but not the weights it ends with, change freely. A resumed attempt whose config
differs in anything is appended to `config_history.jsonl`:

    {"step": S, "resumed_from": "<checkpoint>", "changes": {"optim.lr": [0.002, 0.001], ...},
     "config": {...the whole config of the attempt...}}

Keys are compared one by one (a mapping such as `model.overrides` as one value); a key an older
cliplab did not write compares as its current default.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from cliplab.checkpoint_files.manifest import read_manifest
from cliplab.errors import UserError
from cliplab.eval.run_layout import CHECKPOINTS_DIR, CONFIG_HISTORY_FILE, RUN_CONFIG_FILE
from cliplab.train.checkpointing.atomic_files import write_text_atomic
from cliplab.train.config import TrainConfig
from cliplab.train.config.io import config_to_dict, save_config


@dataclass(frozen=True)
class FreeOnResume:
    """A dotted key, or a section (every key under it), that a resume may change, and why."""

    key: str
    why: str


FREE_ON_RESUME: tuple[FreeOnResume, ...] = (
    FreeOnResume("logging", "where and how often the run reports (its name too: `--resume PATH` may continue "
                            "another run's checkpoint under a new name)"),
    FreeOnResume("eval", "what is evaluated and when; evaluating leaves the weights and the RNG streams alone"),
    FreeOnResume("checkpoint", "when checkpoints are written, how many are kept, what is resumed, the exit "
                               "status of a preempted run, these allowances"),
    FreeOnResume("data.workers", "the batches do not depend on the number of loader processes"),
    FreeOnResume("data.val_data", "evaluation data"),
    FreeOnResume("data.val_num_samples", "evaluation data"),
    FreeOnResume("data.max_skip_fraction", "when too many bad samples stop the run, not what it reads"),
    FreeOnResume("data.skip_check_min_samples", "when too many bad samples stop the run, not what it reads"),
    FreeOnResume("data.fashion_mnist_download", "where Fashion-MNIST comes from, not what it holds"),
    FreeOnResume("data.cache_dir", "where downloads are kept"),
    FreeOnResume("loop.batch_size", "per process: the global batch (batch_size x ranks x accum_freq) must stay, "
                                    "which resume checks (`TrainData.check_resumable`), so the ranks may change"),
    FreeOnResume("loop.accum_freq", "the global batch must stay (see loop.batch_size); accumulation is exact"),
    FreeOnResume("loop.threads", "speed only"),
    FreeOnResume("loop.deterministic", "which kernels torch picks, not what they compute"),
    FreeOnResume("model.tokenizer", "a resume takes the checkpoint's tokenizer (`tokenizer_setup`)"),
    FreeOnResume("model.grad_checkpointing", "recomputes the same activations"),
    FreeOnResume("model.torchcompile", "the same model, compiled"),
    FreeOnResume("ema.cpu", "where the EMA's averages are kept, not what they are"),
    FreeOnResume("guards", "when a failing run stops"),
    FreeOnResume("distributed", "how ranks meet and shard (an FSDP2 run resumes a DDP checkpoint)"),
)


class ConfigChangeError(UserError):
    """A resume changes settings that affect training without `--allow-config-change` naming them."""


def covers(prefix: str, key: str) -> bool:
    """Whether dotted `prefix` is `key` or a section / key above it."""
    return key == prefix or key.startswith(prefix + ".")


def is_free_on_resume(key: str) -> bool:
    return any(covers(entry.key, key) for entry in FREE_ON_RESUME)


def settings(config: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted key: JSON-ready value} of every key of a (nested) config dataclass: sections are
    walked into, a mapping-valued key (`model.overrides`) is one value."""
    found: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value, key = getattr(config, field.name), f"{prefix}{field.name}"
        if dataclasses.is_dataclass(value):
            found.update(settings(value, prefix=f"{key}."))
        else:
            found[key] = json.loads(json.dumps(value))
    return found


def _lookup(values: Mapping[str, Any], key: str, default: Any) -> Any:
    node: Any = values
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def config_changes(reference: Mapping[str, Any], config: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (reference value, config value)} for every key of `config` whose value differs
    from the saved `reference` (a config.json), in field order. A key `reference` lacks (written by
    an older cliplab) compares as its current default."""
    defaults = config_to_dict(TrainConfig())
    changes = {}
    for key, value in settings(config).items():
        old = _lookup(reference, key, _lookup(defaults, key, None))
        if old != value:
            changes[key] = (old, value)
    return changes


@dataclass(frozen=True)
class ConfigOnResume:
    """What a resumed attempt changes: step (of the checkpoint), checkpoint, changes (every leaf that
    differs from the config in force there, (old, new)); reference: the file that config came from
    (None: none was found beside the checkpoint, and nothing was compared)."""

    step: int
    checkpoint: Path
    changes: dict[str, tuple[Any, Any]]
    reference: Path | None


def config_in_force(run_dir: Path, step: int) -> tuple[dict | None, Path | None]:
    """(the config `run_dir`'s run trained with after step `step`, the file it came from): the last
    record of config_history.jsonl at or before `step`, else config.json; (None, None) without either."""
    history = run_dir / CONFIG_HISTORY_FILE
    found = None
    if history.is_file():
        for line in history.read_text(encoding="utf-8").splitlines():
            record = _history_record(line)
            if record is not None and record["step"] <= step:
                found = record["config"]
    if found is not None:
        return found, history
    path = run_dir / RUN_CONFIG_FILE
    if not path.is_file():
        return None, None
    try:
        return json.loads(path.read_text(encoding="utf-8")), path
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not the JSON config cliplab wrote ({error}); restore it from a copy to resume "
                        "the run") from None


def _history_record(line: str) -> dict | None:
    """A record of config_history.jsonl; None for a line torn by a kill (the last one)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and isinstance(record.get("config"), dict) else None


def check_config_on_resume(config: TrainConfig, checkpoint: Path | None) -> ConfigOnResume | None:
    """Compare `config` with the config in force at `checkpoint` (None: a fresh start, nothing to
    compare); raise ConfigChangeError naming each change `checkpoint.allow_config_change` does not
    cover. Main process (it reads the run's files)."""
    if checkpoint is None:
        return None
    step = read_manifest(checkpoint).step
    run_dir = checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS_DIR else None
    reference, source = config_in_force(run_dir, step) if run_dir is not None else (None, None)
    if reference is None:
        return ConfigOnResume(step=step, checkpoint=checkpoint, changes={}, reference=None)
    changes = config_changes(reference, config)
    allowed = config.checkpoint.allow_config_change
    refused = {key: change for key, change in changes.items()
               if not is_free_on_resume(key) and not any(covers(prefix, key) for prefix in allowed)}
    if refused:
        raise ConfigChangeError(
            f"resuming {checkpoint} (step {step}) with settings that change training, against {source}: "
            f"{describe_changes(refused)}; resume with the settings it was trained with, or name them in "
            f"--allow-config-change {','.join(refused)} to change them from step {step} on")
    return ConfigOnResume(step=step, checkpoint=checkpoint, changes=changes, reference=source)


def describe_changes(changes: Mapping[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{key} {json.dumps(old)} -> {json.dumps(new)}" for key, (old, new) in changes.items())


def record_run_config(config: TrainConfig, run_dir: Path, resumed: ConfigOnResume | None,
                      note: Callable[[str], None] = print) -> None:
    """Keep the run's config history (module docstring). A fresh start writes config.json (and drops
    the history of attempts that left no checkpoint); a resume writes config.json only where the
    run directory has none, and appends a record when anything changed. Main process."""
    config_path, history = run_dir / RUN_CONFIG_FILE, run_dir / CONFIG_HISTORY_FILE
    if resumed is None:
        save_config(config, config_path)
        history.unlink(missing_ok=True)
        return
    if not config_path.is_file():
        save_config(config, config_path)
    if resumed.reference is None:
        note(f"note: no run config found beside {resumed.checkpoint}; its settings were not compared with this run's")
    if not resumed.changes:
        return
    record = {"step": resumed.step, "resumed_from": str(resumed.checkpoint),
              "changes": {key: list(change) for key, change in resumed.changes.items()},
              "config": config_to_dict(config)}
    previous = history.read_text(encoding="utf-8") if history.is_file() else ""
    if previous and not previous.endswith("\n"):  # a record torn by a kill
        previous = previous[:previous.rfind("\n") + 1]
    write_text_atomic(history, previous + json.dumps(record) + "\n")
    affecting = {key: change for key, change in resumed.changes.items() if not is_free_on_resume(key)}
    others = len(resumed.changes) - len(affecting)
    if affecting:
        note(f"config changed from step {resumed.step} on, as --allow-config-change allows: "
             f"{describe_changes(affecting)}" + (f" (and {others} setting{'s' * (others > 1)} that do not affect "
                                                  "training)" if others else "") + f"; recorded in {history}")
