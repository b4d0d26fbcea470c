"""open_clip's entry points, so that migrating is one import:

    model, preprocess_train, preprocess_val = cliplab.create_model_and_transforms(
        "ViT-B-32", pretrained="laion2b_s34b_b79k")          # an open_clip pretrained tag
    model, preprocess = cliplab.create_model_from_pretrained("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")
    tokenizer = cliplab.get_tokenizer("ViT-B-32")
    image_features, text_features, logit_scale = model(images, cliplab.tokenize(["a cat"]))

`pretrained` is an open_clip pretrained tag of the model (`cliplab.list_pretrained()`; the weights
come through the Hugging Face cache, `cliplab.pretrained.tags`) or a local path in any format
`cliplab.load` accepts. A model name with the `hf-hub:` or `local-dir:` prefix carries its weights,
as in open_clip (`pretrained` must then be None).
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cliplab.model_io import load_model
from cliplab.data.tokenizer_files import tokenizer_from_open_clip_config
from cliplab.data.tokenizer_openai import openai_bpe_tokenizer
from cliplab.data.transforms import ImageTransform, image_transform
from cliplab.errors import UserError
from cliplab.models import create_model
from cliplab.models.open_clip_config import builtin_open_clip_config, known_open_clip_names
from cliplab.pretrained.formats.prefixes import HF_HUB_PREFIX, LOCAL_DIR_PREFIX


def _carries_weights(model_name: str) -> bool:
    return model_name.startswith((HF_HUB_PREFIX, LOCAL_DIR_PREFIX))


def _build(model_name: str, pretrained: str | os.PathLike | None, device: str | torch.device,
           output_dict: bool, overrides: dict[str, Any]) -> nn.Module:
    if _carries_weights(model_name):
        if pretrained is not None:
            raise UserError(f"model_name {model_name!r} carries its weights: pass pretrained=None")
        source, architecture = model_name, None
    elif pretrained is None:
        return create_model(model_name, output_dict=output_dict, device=device, **overrides)
    else:
        source, architecture = pretrained, model_name
    if overrides:
        raise UserError(f"architecture overrides {sorted(overrides)} cannot apply to pretrained weights")
    return load_model(source, model=architecture, device=device, output_dict=output_dict,
                      require_tokenizer=False).model


def create_model_and_transforms(model_name: str, pretrained: str | os.PathLike | None = None, *,
                                device: str | torch.device = "cpu", output_dict: bool = False,
                                **overrides: Any) -> tuple[nn.Module, ImageTransform, ImageTransform]:
    """(model, train transform, eval transform) as open_clip returns them. With `pretrained`, the
    model holds those weights, in eval mode; without, it is freshly initialised (overrides apply,
    see `cliplab.create_model`). The transforms follow the model's `config.preprocess`."""
    model = _build(model_name, pretrained, device, output_dict, overrides)
    preprocess = model.config.preprocess
    return model, image_transform(preprocess, train=True), image_transform(preprocess, train=False)


def create_model_from_pretrained(model_name: str, pretrained: str | os.PathLike | None = None, *,
                                 device: str | torch.device = "cpu",
                                 output_dict: bool = False) -> tuple[nn.Module, ImageTransform]:
    """(model in eval mode, eval transform), as open_clip's function of the same name."""
    if pretrained is None and not _carries_weights(model_name):
        raise UserError(f"create_model_from_pretrained({model_name!r}) needs pretrained=PATH (or a model name "
                        f"with {HF_HUB_PREFIX} / {LOCAL_DIR_PREFIX}); use create_model for random weights")
    model = _build(model_name, pretrained, device, output_dict, {})
    return model, image_transform(model.config.preprocess, train=False)


def get_tokenizer(model_name: str, context_length: int | None = None, *,
                  directory: str | os.PathLike | None = None) -> Any:
    """The tokenizer open_clip's `get_tokenizer(model_name)` gives: for a built-in open_clip name the
    OpenAI BPE at that model's context length, or (configs naming a Hugging Face tokenizer, e.g.
    the CLIPA ones) that tokenizer read from `directory`. For a checkpoint path (any format, with
    or without open_clip's prefixes): the checkpoint's own tokenizer."""
    if model_name in known_open_clip_names():  # the tokenizer needs no tower family
        return tokenizer_from_open_clip_config(builtin_open_clip_config(model_name), context_length, directory)
    if _carries_weights(model_name) or Path(model_name).exists():
        loaded = load_model(model_name, device="meta")
        if context_length is not None and context_length != loaded.tokenizer.context_length:
            raise UserError(f"context_length={context_length}: the tokenizer of {model_name} has "
                            f"{loaded.tokenizer.context_length}; pass context_length when calling it instead")
        return loaded.tokenizer
    raise UserError(f"get_tokenizer({model_name!r}): expected a built-in open_clip model name (e.g. 'ViT-B-32') or "
                    "a checkpoint path; cliplab's own architectures (e.g. 'tiny') train their tokenizer: load "
                    "it with the model (cliplab.load)")


@lru_cache(maxsize=4)
def _openai_bpe(context_length: int) -> Any:
    return openai_bpe_tokenizer(context_length)


def tokenize(texts: str | list[str], context_length: int = 77) -> torch.Tensor:
    """open_clip's `tokenize`: OpenAI's BPE (open_clip's SimpleTokenizer: cleaned, lower-cased,
    start and end tokens, padded with 0) -> LongTensor[N, context_length]; a text too long ends
    on the end token."""
    return _openai_bpe(context_length)(texts)
