"""Training: config dataclasses, the Trainer and its components, checkpointing, accumulation, guards.

    from cliplab.train import train, smoke_config
    result = train(smoke_config(logs="/tmp/runs"))   # TrainResult(run_dir, summary)

Every name is imported on first use (`cliplab.lazy_exports`), so that `cliplab.train.config` (the
tables the CLI's --help shows) imports without torch.
"""

from cliplab.lazy_exports import lazy_exports

# public name -> module that defines it
_EXPORTS = {
    "CheckpointConfig": "cliplab.train.config",
    "CheckpointManager": "cliplab.train.checkpoint",
    "ConfigError": "cliplab.train.config",
    "DistributedConfig": "cliplab.train.config",
    "EvalConfig": "cliplab.train.config",
    "GuardConfig": "cliplab.train.config",
    "LoggingConfig": "cliplab.train.config",
    "LoopConfig": "cliplab.train.config",
    "LossConfig": "cliplab.train.config",
    "ModelSetupConfig": "cliplab.train.config",
    "NonFiniteLossError": "cliplab.train.guards",
    "OptimConfig": "cliplab.train.config",
    "TrainConfig": "cliplab.train.config",
    "TrainHooks": "cliplab.train.trainer",
    "TrainResult": "cliplab.train.trainer",
    "TrainState": "cliplab.train.state",
    "Trainer": "cliplab.train.trainer",
    "config_from_dict": "cliplab.train.config_io",
    "config_to_dict": "cliplab.train.config_io",
    "load_config_file": "cliplab.train.config_io",
    "resolve_config": "cliplab.train.config_io",
    "restore_training_state": "cliplab.train.checkpoint",
    "smoke_config": "cliplab.train.presets",
    "train": "cliplab.train.trainer",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
