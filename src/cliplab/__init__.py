"""cliplab: train, evaluate and use CLIP-family models.

    import cliplab
    model, preprocess, tokenizer = cliplab.load("logs/tiny-run")    # any checkpoint, see cliplab.model_io
    model, preprocess, tokenizer = cliplab.load("ViT-B-32.pt")      # OpenAI, open_clip, Hugging Face too
    image_features = model.encode_image(preprocess(pil_image)[None], normalize=True)   # [1, E]
    classifier = cliplab.zero_shot_classifier(model, tokenizer, ["bag", "coat"], ["a photo of the {}."])  # [C, E]
    metrics = cliplab.retrieval_metrics(image_features, text_features, model.logit_scale.exp())

    model = cliplab.create_model("tiny", embed_dim=32)             # names: cliplab.list_models()
    cliplab.save(model, tokenizer, "out/bundle")
    cliplab.export(model, tokenizer, "out/hf", format="hf")        # or format="open_clip"

    # open_clip's entry points, unchanged:
    model, preprocess_train, preprocess_val = cliplab.create_model_and_transforms("ViT-B-32", pretrained=PATH)
    tokenizer = cliplab.get_tokenizer("ViT-B-32")

The names are imported on first use (PEP 562 `__getattr__`), so `import cliplab` and the CLI's
`--help` do not pay for importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cliplab.lazy_exports import exported_names, lazy_exports

# defining module -> its public names
_EXPORTS = {
    "cliplab.model_io": ("load", "load_model", "save"),
    "cliplab.eval": ("retrieval_metrics", "zero_shot_classifier"),
    "cliplab.eval.zero_shot": ("build_zero_shot_classifier",),
    "cliplab.open_clip_api": ("create_model_and_transforms", "create_model_from_pretrained", "get_tokenizer", "tokenize"),
    "cliplab.models": ("create_model", "list_models"),
    "cliplab.pretrained.export": ("export",),
    "cliplab.pretrained.tags": ("list_pretrained", "list_pretrained_models_by_tag", "list_pretrained_tags_by_model"),
    "cliplab.pretrained.wise_ft": ("wise_ft",),
}

__all__ = exported_names(_EXPORTS)

if TYPE_CHECKING:
    from cliplab.model_io import load, load_model, save
    from cliplab.eval import retrieval_metrics, zero_shot_classifier
    from cliplab.eval.zero_shot import build_zero_shot_classifier
    from cliplab.open_clip_api import create_model_and_transforms, create_model_from_pretrained, get_tokenizer, tokenize
    from cliplab.models import create_model, list_models
    from cliplab.pretrained.export import export
    from cliplab.pretrained.tags import list_pretrained, list_pretrained_models_by_tag, list_pretrained_tags_by_model
    from cliplab.pretrained.wise_ft import wise_ft

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
