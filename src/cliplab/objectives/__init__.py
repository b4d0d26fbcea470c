"""Extra training objectives of the x-clip family, composed around the main contrastive loss.

`build_objectives(config, model, tokenizer)` checks at start-up that the model supports every
enabled term and returns an `Objectives` module; see docs/objectives.md.
"""

from cliplab.lazy_exports import lazy_exports

# public name -> module that defines it; imported on first use, so that the configs (read by the
# CLI's --help) import without torch
_EXPORTS = {
    "AugmentConfig": "cliplab.objectives.config",
    "ContrastiveConfig": "cliplab.objectives.config",
    "FilipConfig": "cliplab.objectives.config",
    "MlmConfig": "cliplab.objectives.config",
    "MultiviewConfig": "cliplab.objectives.config",
    "Objectives": "cliplab.objectives.objectives",
    "ObjectivesConfig": "cliplab.objectives.config",
    "SimClrConfig": "cliplab.objectives.config",
    "SimRegConfig": "cliplab.objectives.config",
    "SimSiamConfig": "cliplab.objectives.config",
    "UnsupportedObjectiveError": "cliplab.objectives.builder",
    "build_objectives": "cliplab.objectives.builder",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
