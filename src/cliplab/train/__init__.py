"""Training: config dataclasses, the Trainer and its components, checkpointing, accumulation, guards.

    from cliplab.train import train, smoke_config
    result = train(smoke_config(logs="/tmp/runs"))   # TrainResult(run_dir, summary)
"""

from cliplab.train.checkpoint import CheckpointManager, restore_training_state
from cliplab.train.config import (CheckpointConfig, ConfigError, DistributedConfig, EvalConfig, GuardConfig,
                                  LoggingConfig, LoopConfig, LossConfig, ModelSetupConfig, OptimConfig,
                                  TrainConfig)
from cliplab.train.config_io import config_from_dict, config_to_dict, load_config_file, resolve_config
from cliplab.train.guards import NonFiniteLossError
from cliplab.train.presets import smoke_config
from cliplab.train.state import TrainState
from cliplab.train.trainer import Trainer, TrainHooks, TrainResult, train

__all__ = [
    "CheckpointConfig", "CheckpointManager", "ConfigError", "DistributedConfig", "EvalConfig", "GuardConfig",
    "LoggingConfig", "LoopConfig", "LossConfig", "ModelSetupConfig", "NonFiniteLossError", "OptimConfig",
    "TrainConfig", "TrainHooks", "TrainResult", "TrainState", "Trainer", "config_from_dict", "config_to_dict",
    "load_config_file", "resolve_config", "restore_training_state", "smoke_config", "train",
]
