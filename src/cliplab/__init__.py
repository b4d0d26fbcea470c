"""cliplab: train, evaluate and use CLIP-family models.

    import cliplab
    model, preprocess, tokenizer = cliplab.load("logs/tiny-run")    # bundle, step or run directory
    image_features = model.encode_image(preprocess(pil_image)[None], normalize=True)   # [1, E]
    classifier = cliplab.zero_shot_classifier(model, tokenizer, ["bag", "coat"], ["a photo of the {}."])
    metrics = cliplab.retrieval_metrics(image_features, text_features, model.logit_scale.exp())

    model = cliplab.create_model("tiny", embed_dim=32)             # names: cliplab.list_models()
    cliplab.save(model, tokenizer, "out/bundle")

The names are imported on first use (PEP 562 `__getattr__`), so `import cliplab` and the CLI's
`--help` do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module that defines it
_EXPORTS = {
    "create_model": "cliplab.models",
    "list_models": "cliplab.models",
    "save": "cliplab.bundle",
    "load": "cliplab.eval.checkpoint_path",
    "zero_shot_classifier": "cliplab.eval",
    "retrieval_metrics": "cliplab.eval",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from cliplab.bundle import save
    from cliplab.eval import retrieval_metrics, zero_shot_classifier
    from cliplab.eval.checkpoint_path import load
    from cliplab.models import create_model, list_models


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'cliplab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
