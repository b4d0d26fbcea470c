"""Training: config dataclasses, optimiser/schedule, checkpointing, accumulation, guards, the loop.

    from cliplab.train import train, smoke_config
    result = train(smoke_config(logs="/tmp/runs"))   # TrainResult(run_dir, summary)
"""

from cliplab.train.checkpoint import CheckpointManager, TrainState, load_checkpoint
from cliplab.train.config import (CheckpointConfig, ConfigError, DistributedConfig, EvalConfig, GuardConfig,
                                  LoggingConfig, LoopConfig, LossConfig, ModelSetupConfig, OptimConfig,
                                  TrainConfig)
from cliplab.train.config_io import config_from_dict, config_to_dict, load_config_file, resolve_config
from cliplab.train.guards import NonFiniteLossError
from cliplab.train.loop import TrainHooks, TrainResult, train
from cliplab.train.presets import smoke_config

__all__ = [
    "CheckpointConfig", "CheckpointManager", "ConfigError", "DistributedConfig", "EvalConfig", "GuardConfig",
    "LoggingConfig", "LoopConfig", "LossConfig", "ModelSetupConfig", "NonFiniteLossError", "OptimConfig",
    "TrainConfig", "TrainHooks", "TrainResult", "TrainState", "config_from_dict", "config_to_dict",
    "load_checkpoint", "load_config_file", "resolve_config", "smoke_config", "train",
]
