"""Extra training objectives of the x-clip family, composed around the main contrastive loss.

`build_objectives(config, model, tokenizer)` checks at start-up that the model supports every
enabled term and returns an `Objectives` module; see docs/objectives.md.
"""

from cliplab.objectives.builder import UnsupportedObjectiveError, build_objectives
from cliplab.objectives.config import (
    AugmentConfig,
    ContrastiveConfig,
    FilipConfig,
    MlmConfig,
    MultiviewConfig,
    ObjectivesConfig,
    SimClrConfig,
    SimRegConfig,
    SimSiamConfig,
)
from cliplab.objectives.objectives import Objectives

__all__ = [
    "AugmentConfig",
    "ContrastiveConfig",
    "FilipConfig",
    "MlmConfig",
    "MultiviewConfig",
    "Objectives",
    "ObjectivesConfig",
    "SimClrConfig",
    "SimRegConfig",
    "SimSiamConfig",
    "UnsupportedObjectiveError",
    "build_objectives",
]
