"""Extra training objectives of the x-clip family, composed around the main contrastive loss.

`build_objectives(config, model, tokenizer)` checks at start-up that the model supports every
enabled term and returns an `Objectives` module; see docs/objectives.md. The terms are the entries
of `cliplab.objectives.terms.OBJECTIVE_TERMS` (how to add one: that package's docstring).
"""

from cliplab.objectives.builder import build_objectives
from cliplab.objectives.config import AugmentConfig, ObjectivesConfig
from cliplab.objectives.objectives import Objectives
from cliplab.objectives.terms import OBJECTIVE_TERMS, ObjectiveTerm, UnsupportedObjectiveError
from cliplab.objectives.terms.contrastive import ContrastiveConfig
from cliplab.objectives.terms.filip import FilipConfig
from cliplab.objectives.terms.mlm import MlmConfig
from cliplab.objectives.terms.multiview import MultiviewConfig
from cliplab.objectives.terms.sim_reg import SimRegConfig
from cliplab.objectives.terms.simclr import SimClrConfig
from cliplab.objectives.terms.simsiam import SimSiamConfig

__all__ = [
    "OBJECTIVE_TERMS",
    "AugmentConfig",
    "ContrastiveConfig",
    "FilipConfig",
    "MlmConfig",
    "MultiviewConfig",
    "ObjectiveTerm",
    "Objectives",
    "ObjectivesConfig",
    "SimClrConfig",
    "SimRegConfig",
    "SimSiamConfig",
    "UnsupportedObjectiveError",
    "build_objectives",
]
