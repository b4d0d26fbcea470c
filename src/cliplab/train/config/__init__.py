"""The training configuration: `sections` (one keyword-only dataclass per concern, composed into
`TrainConfig`, validated with `cliplab.config_checks`), `io` (TrainConfig <-> YAML/JSON/flags,
strict), `history` (the config of every attempt of a run, and what may change on resume),
`presets` (the tiny twins tests and examples run).

The sections are re-exported here (`from cliplab.train.config import TrainConfig`); this package
imports without torch, so the CLI's --help reads the same tuples (`PRECISIONS`, ...). `io` and
`history` are imported where they are used.
"""

from cliplab.config_checks import ConfigError
from cliplab.losses.siglip_exchanges import SIGLIP_DIST_IMPLS
from cliplab.precision_names import PRECISIONS
from cliplab.train.config.sections import (CONTEXT_EXTENSIONS, DEFAULT_MODEL_OVERRIDES, LR_SCHEDULERS,
                                           REQUEUE_EXIT_CODES, CheckpointConfig, DistributedConfig, EmaConfig,
                                           EvalConfig, GuardConfig, LoggingConfig, LoopConfig, LoraConfig, LossConfig,
                                           ModelSetupConfig, OptimConfig, TrainConfig, has_evaluation_data,
                                           has_retrieval_data, is_one_path_component, names_config_key)

__all__ = ["CONTEXT_EXTENSIONS", "DEFAULT_MODEL_OVERRIDES", "LR_SCHEDULERS", "PRECISIONS", "REQUEUE_EXIT_CODES",
           "SIGLIP_DIST_IMPLS", "CheckpointConfig", "ConfigError", "DistributedConfig", "EmaConfig", "EvalConfig",
           "GuardConfig", "LoggingConfig", "LoopConfig", "LoraConfig", "LossConfig", "ModelSetupConfig", "OptimConfig",
           "TrainConfig", "has_evaluation_data", "has_retrieval_data", "is_one_path_component", "names_config_key"]
