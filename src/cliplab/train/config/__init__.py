"""The training configuration: `sections` (one keyword-only dataclass per concern, composed into
`TrainConfig`, validated with `cliplab.config_checks`), `io` (TrainConfig <-> YAML/JSON/flags,
strict), `presets` (the tiny twins tests and examples run).

The sections are re-exported here (`from cliplab.train.config import TrainConfig`); this package
imports without torch, so the CLI's --help reads the same tuples (`PRECISIONS`, ...). `io` is
imported where it is used.
"""

from cliplab.config_checks import ConfigError
from cliplab.losses.siglip_exchanges import SIGLIP_DIST_IMPLS
from cliplab.train.config.sections import (DEFAULT_MODEL_OVERRIDES, LR_SCHEDULERS, PRECISIONS, CheckpointConfig,
                                           DistributedConfig, EvalConfig, GuardConfig, LoggingConfig, LoopConfig,
                                           LossConfig, ModelSetupConfig, OptimConfig, TrainConfig, has_evaluation_data,
                                           has_retrieval_data, is_one_path_component)

__all__ = ["DEFAULT_MODEL_OVERRIDES", "LR_SCHEDULERS", "PRECISIONS", "SIGLIP_DIST_IMPLS", "CheckpointConfig",
           "ConfigError", "DistributedConfig", "EvalConfig", "GuardConfig", "LoggingConfig", "LoopConfig", "LossConfig",
           "ModelSetupConfig", "OptimConfig", "TrainConfig", "has_evaluation_data", "has_retrieval_data",
           "is_one_path_component"]
