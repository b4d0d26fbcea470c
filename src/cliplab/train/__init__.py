"""Training: config dataclasses, the Trainer and its components, checkpointing, accumulation, guards.

    from cliplab.train import train, smoke_config
    result = train(smoke_config(logs="/tmp/runs"))   # TrainResult(run_dir, summary)

Every name is imported on first use (`cliplab.lazy_exports`), so that `cliplab.train.config` (the
tables the CLI's --help shows) imports without torch.
"""

from cliplab.lazy_exports import exported_names, lazy_exports

# defining module -> its public names
_EXPORTS = {
    "cliplab.train.checkpoint": ("CheckpointManager", "restore_training_state"),
    "cliplab.train.config": ("CheckpointConfig", "ConfigError", "DistributedConfig", "EmaConfig", "EvalConfig",
                             "GuardConfig", "LoggingConfig", "LoopConfig", "LoraConfig", "LossConfig",
                             "ModelSetupConfig", "OptimConfig", "TrainConfig"),
    "cliplab.train.config_io": ("config_from_dict", "config_to_dict", "load_config_file", "resolve_config"),
    "cliplab.train.dry_run": ("dry_run",),
    "cliplab.train.guards": ("NonFiniteLossError",),
    "cliplab.train.presets": ("smoke_config",),
    "cliplab.train.state": ("TrainState",),
    "cliplab.train.trainer": ("TrainHooks", "TrainResult", "Trainer", "train"),
}

__all__ = exported_names(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
