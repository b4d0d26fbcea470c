"""open_clip's pretrained tags (`cliplab.pretrained.tags`): a tag such as "laion2b_s34b_b79k" given
as the path, with `model=` naming its architecture; the weights are the Hub repository's the tag
names, read through the Hugging Face cache, as an open_clip checkpoint with the tag's
preprocessing (so `LoadedModel.format` is "open_clip_checkpoint")."""

from __future__ import annotations

from typing import Any

from cliplab.pretrained.formats.spec import CheckpointFormat, LoadedModel, Location


def _tag(location: Location) -> Any:
    from cliplab.pretrained.tags import find_pretrained_tag

    model = location.request.model
    if location.path.exists() or not isinstance(model, str):
        return None
    return find_pretrained_tag(model, location.text)


def read(location: Location) -> LoadedModel:
    from cliplab.pretrained.loaders import loaded_from_foreign, read_pretrained_tag

    return loaded_from_foreign(read_pretrained_tag(_tag(location), location.request.model), location.request)


def missing_hint(location: Location) -> str:
    """What a path that does not exist may have meant as an open_clip pretrained tag."""
    from cliplab.pretrained.tags import (describe_tags_of, list_pretrained_models_by_tag,
                                         list_pretrained_tags_by_model, looks_like_a_tag)

    text, model = location.text, location.request.model
    if not looks_like_a_tag(text):
        return ""
    models = list_pretrained_models_by_tag(text)
    if isinstance(model, str) and (models or list_pretrained_tags_by_model(model)):
        return f", and it is not a pretrained tag of {model}: {describe_tags_of(model, text)}"
    if models:
        shown = ", ".join(models[:5]) + (", ..." if len(models) > 5 else "")
        return f"; {text!r} is an open_clip pretrained tag of {shown}: name the architecture (model=NAME, --model)"
    return ""


FORMAT = CheckpointFormat(
    name="pretrained_tag", architecture="named",
    summary="an open_clip pretrained tag with its model: load('laion2b_s34b_b79k', model='ViT-B-32') "
            "(cliplab.list_pretrained())",
    detect=lambda location: _tag(location) is not None, read=read, missing_hint=missing_hint,
)
