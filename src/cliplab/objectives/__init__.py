"""Extra training objectives of the x-clip family, composed around the main contrastive loss.

`build_objectives(config, model, tokenizer)` checks at start-up that the model supports every
enabled term and returns an `Objectives` module; see docs/objectives.md. The terms are the entries
of `cliplab.objectives.terms.OBJECTIVE_TERMS` (how to add one: that package's docstring).
"""

from cliplab.lazy_exports import exported_names, lazy_exports
from cliplab.objectives.terms import OBJECTIVE_TERMS

# defining module -> its public names; imported on first use, so that the configs (read by the
# CLI's --help) import without torch
_EXPORTS = {
    "cliplab.objectives.builder": ("build_objectives",),
    "cliplab.objectives.config": ("AugmentConfig", "ObjectivesConfig"),
    "cliplab.objectives.objectives": ("Objectives",),
    "cliplab.objectives.terms": ("OBJECTIVE_TERMS", "ObjectiveTerm", "UnsupportedObjectiveError"),
}
# each term's section config (FilipConfig, ...), from the table (the term modules import without torch)
_EXPORTS.update({term.config.__module__: (term.config.__name__,) for term in OBJECTIVE_TERMS})

__all__ = exported_names(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
