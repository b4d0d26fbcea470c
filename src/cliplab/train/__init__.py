"""Training: the Trainer and its components, one folder per part.

    from cliplab.train import train, smoke_config
    result = train(smoke_config(logs="/tmp/runs"))   # TrainResult(run_dir, summary)

    trainer.py       `train()`, `Trainer` (builds the components in order, runs the steps), `TrainHooks`
    state.py         `TrainState`: every counter a checkpoint holds
    run_dir.py       the run directory: claimed, locked, what to resume
    evaluation.py    evaluation during training (`Evaluator`)
    dry_run.py       `train --dry-run`: the model and the optimiser's parameter groups, nothing trained
    config/          the configuration: sections, loading/saving, presets
    setup/           the components built from their config sections (model, LoRA adapters, tokenizer, objectives,
                     data)
    parallel/        processes, devices, DDP / FSDP2
    step/            the parts of one optimiser step (accumulation, loss, precision, optimiser and its parameter
                     groups, schedule, guards, the EMA of the weights, the text prefix)
    checkpointing/   checkpoints written and read back (file protocol, payload, DCP, the run lock)
    metrics/         metrics.jsonl, console lines, sinks, summary.json

Every name is imported on first use (`cliplab.lazy_exports`), so that `cliplab.train.config` (the
tables the CLI's --help shows) imports without torch.
"""

from cliplab.lazy_exports import exported_names, lazy_exports

# defining module -> its public names
_EXPORTS = {
    "cliplab.train.checkpointing.manager": ("CheckpointManager", "restore_training_state"),
    "cliplab.train.config": ("CheckpointConfig", "ConfigError", "DistributedConfig", "EmaConfig", "EvalConfig",
                             "GuardConfig", "LoggingConfig", "LoopConfig", "LoraConfig", "LossConfig",
                             "ModelSetupConfig", "OptimConfig", "TrainConfig"),
    "cliplab.train.config.io": ("config_from_dict", "config_to_dict", "load_config_file", "resolve_config"),
    "cliplab.train.config.presets": ("smoke_config",),
    "cliplab.train.dry_run": ("dry_run",),
    "cliplab.train.step.guards": ("NonFiniteLossError",),
    "cliplab.train.state": ("TrainState",),
    "cliplab.train.trainer": ("TrainHooks", "TrainResult", "Trainer", "train"),
}

__all__ = exported_names(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
