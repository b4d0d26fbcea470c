"""Save a model for use, and load one from any path a user gives: `cliplab.save`, `cliplab.load`,
`cliplab.load_model`.

    save(model, tokenizer, "runs/tiny/bundle")
    model, preprocess, tokenizer = load("runs/tiny")                      # a cliplab run directory
    model, preprocess, tokenizer = load("ViT-B-32.pt")                    # OpenAI CLIP
    model, preprocess, tokenizer = load("epoch_32.pt", model="ViT-B-32")  # open_clip training checkpoint
    loaded = load_model("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")   # -> LoadedModel

What `load` accepts is the table `cliplab.pretrained.formats.FORMATS`: cliplab bundles, training
step directories and run directories (`cliplab.pretrained.cliplab_bundle`), and the open_clip,
OpenAI and Hugging Face formats (`cliplab.pretrained.loaders`). Anything else fails with a
`CheckpointNotFoundError` that says what was found and lists the accepted formats.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from cliplab.models import CLIP, ModelConfig
from cliplab.pretrained.cliplab_bundle import save
from cliplab.pretrained.formats import CheckpointNotFoundError, LoadedModel, LoadRequest, read_checkpoint


def load_model(path: str | os.PathLike, *, model: str | ModelConfig | None = None,
               device: str | torch.device = "cpu", output_dict: bool = False,
               require_tokenizer: bool = True, ema: bool = False) -> LoadedModel:
    """The model, preprocessing and tokenizer at `path` (any accepted format; see the module).

    model: the architecture, for formats without one (an open_clip training checkpoint or state
    dict: open_clip's name, e.g. "ViT-B-32"); for an OpenAI .pt it replaces the architecture read
    off the shapes; for formats that carry one it must agree. device: where the weights go ("meta":
    build without reading them). output_dict: what forward returns (training uses True).
    require_tokenizer: False accepts a checkpoint without tokenizer files cliplab reads (tokenizer
    is then None). ema: the EMA weights of a training checkpoint of a run with an EMA (--ema-decay)
    instead of its model's (UserError for anything else). A checkpoint of a run with LoRA adapters
    loads with them merged into the weights.
    """
    request = LoadRequest(model=model, device=torch.device(device), output_dict=output_dict,
                          require_tokenizer=require_tokenizer, ema=ema)
    return read_checkpoint(path, request)


def load(path: str | os.PathLike, device: str | torch.device = "cpu", *,
         model: str | ModelConfig | None = None, ema: bool = False) -> tuple[CLIP, Any, Any]:
    """`cliplab.load`: (model in eval mode on `device`, preprocess: PIL image -> Float[3, S, S],
    tokenizer: list of N strings -> Long[N, T]) from any accepted path (see `load_model`; `ema`:
    a run's EMA weights)."""
    loaded = load_model(path, model=model, device=device, ema=ema)
    return loaded.model, loaded.preprocess, loaded.tokenizer


__all__ = ["CheckpointNotFoundError", "LoadedModel", "load", "load_model", "save"]
