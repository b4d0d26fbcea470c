"""Extra training objectives of the x-clip family, composed around the main contrastive loss.

`build_objectives(config, model, tokenizer)` checks at start-up that the model supports every
enabled term and returns an `Objectives` module; see docs/objectives.md.
"""

from cliplab.lazy_exports import exported_names, lazy_exports

# defining module -> its public names; imported on first use, so that the configs (read by the
# CLI's --help) import without torch
_EXPORTS = {
    "cliplab.objectives.builder": ("UnsupportedObjectiveError", "build_objectives"),
    "cliplab.objectives.config": ("AugmentConfig", "ContrastiveConfig", "FilipConfig", "MlmConfig",
                                  "MultiviewConfig", "ObjectivesConfig", "SimClrConfig", "SimRegConfig",
                                  "SimSiamConfig"),
    "cliplab.objectives.objectives": ("Objectives",),
}

__all__ = exported_names(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
