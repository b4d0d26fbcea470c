"""One reader per foreign format: each yields a `ForeignCheckpoint` (architecture, tokenizer,
preprocessing, and how to get the weights in cliplab's names); `build_model_from` makes the model,
`loaded_from_foreign` the `LoadedModel` the format entries (`cliplab.pretrained.formats`) return.

The model is built on the meta device, then allocated and filled tensor by tensor, each read (from
safetensors files: one tensor at a time) and converted when it is copied: no random initialisation
is computed, and loading holds the model plus about one tensor beyond what the file format forces
(PyTorch pickles are read whole). Floating
tensors are upcast to float32 (OpenAI stores fp16). See `formats` for what each format is.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cliplab.data.preprocess_config import PreprocessConfig
from cliplab.data.tokenizer_files import tokenizer_from_open_clip_config
from cliplab.data.tokenizer_hf import hf_tokenizer_from_dir
from cliplab.data.transforms import image_transform
from cliplab.errors import UserError
from cliplab.models import ModelConfig, build_model, get_model_config
from cliplab.models.config import read_json_object
from cliplab.models.open_clip_config import (UnsupportedArchitectureError, builtin_open_clip_config,
                                             config_from_open_clip, config_to_open_clip, known_open_clip_names)
from cliplab.pretrained.cliplab_keys import CLIPLAB_RULES, is_cliplab_layout
from cliplab.pretrained.formats import cliplab_state_dict, format_named, hf, open_clip_checkpoint, open_clip_hub
from cliplab.pretrained.formats import openai as openai_format
from cliplab.pretrained.formats.hf import HF_CONFIG_FILE, HF_WEIGHT_FILES
from cliplab.pretrained.formats.open_clip_hub import HUB_WEIGHT_FILES, OPEN_CLIP_CONFIG
from cliplab.pretrained.formats.spec import LoadedModel, LoadRequest, NotACheckpointError
from cliplab.pretrained.hf_cache import repo_file
from cliplab.pretrained.hf_config import HF_PROCESSOR_CONFIG, config_from_hf
from cliplab.pretrained.hf_keys import hf_model_rules, without_position_ids
from cliplab.pretrained.key_maps import cliplab_reader
from cliplab.pretrained.open_clip_keys import open_clip_rules
from cliplab.pretrained.openai_checkpoint import is_openai_state_dict, openai_model_cfg, without_openai_extras
from cliplab.pretrained.tags import PretrainedTag
from cliplab.pretrained.weight_files import (WeightSource, file_source, read_state_file, sample_keys,
                                             hf_index_source, state_source, tensors_only)

# Given the model's (meta) state dict: a reader of its tensors in cliplab's names.
StateLoader = Callable[[dict[str, torch.Tensor]], Callable[[str], torch.Tensor]]


@dataclass(frozen=True)
class ForeignCheckpoint:
    """format: the name of its `CheckpointFormat` ("open_clip_hub", "open_clip_checkpoint", "openai"
    or "hf"). load_state: given the model's (meta) state dict, the weights by cliplab name, read on
    demand. tokenizer: None only where the checkpoint comes without one cliplab reads
    (`tokenizer_error` says why)."""

    format: str
    path: Path
    config: ModelConfig
    load_state: StateLoader
    tokenizer: Any
    tokenizer_error: str | None = None


ALIGNMENT = 64  # bytes: CPU kernels round differently on tensors at less aligned addresses


def fill_model(model: nn.Module, device: torch.device, take: Callable[[str], torch.Tensor]) -> nn.Module:
    """Give `model` (built on meta) the tensors `take(name)` returns, on `device` in the model's
    dtypes. A tensor already in place (right device and dtype, contiguous, aligned) becomes the
    parameter itself, so nothing is copied twice; any other is copied once."""
    state = {}
    for name, target in model.state_dict(keep_vars=True).items():
        tensor = take(name).to(device=device, dtype=target.dtype)
        if not tensor.is_contiguous() or tensor.data_ptr() % ALIGNMENT:
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        state[name] = tensor
    model.load_state_dict(state, strict=True, assign=True)
    return model


def build_model_from(checkpoint: ForeignCheckpoint, device: str | torch.device = "cpu",
                     output_dict: bool = False) -> nn.Module:
    """The model of `checkpoint` on `device` in eval mode (on "meta": the architecture only, no
    file read)."""
    device = torch.device(device)
    with torch.device("meta"):
        model = build_model(checkpoint.config, output_dict=output_dict)
    if device.type != "meta":
        fill_model(model, device, checkpoint.load_state(model.state_dict()))
    return model.eval()


def first_existing(directory: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    return None


def _state_loader(open_source: Callable[[], WeightSource], rules_for, source: Path) -> StateLoader:
    def load(expected: dict[str, torch.Tensor]) -> Callable[[str], torch.Tensor]:
        shapes, read = open_source()
        return cliplab_reader(shapes, read, expected, rules_for(shapes), str(source))
    return load


def _open_clip_rules_for(config: ModelConfig):
    def rules_for(shapes):
        return open_clip_rules(config, "text." if any(name.startswith("text.") for name in shapes) else "")
    return rules_for


def _tokenizer(make: Callable[[], Any]) -> tuple[Any, str | None]:
    try:
        return make(), None
    except UserError as error:
        return None, str(error)


def read_open_clip_hub(directory: Path, weights: Path | None = None) -> ForeignCheckpoint:
    """An open_clip hub directory (open_clip_config.json + weights, open_clip's lookup order)."""
    values = read_json_object(directory / OPEN_CLIP_CONFIG, f"{directory / OPEN_CLIP_CONFIG}")
    if not isinstance(values.get("model_cfg"), dict):
        raise UserError(f"{directory / OPEN_CLIP_CONFIG} has no 'model_cfg' object")
    model_cfg = values["model_cfg"]
    weights = weights or first_existing(directory, HUB_WEIGHT_FILES)
    if weights is None:
        raise UserError(f"{directory} has {OPEN_CLIP_CONFIG} but no weights: expected one of "
                        f"{', '.join(HUB_WEIGHT_FILES)}")
    image_size = (model_cfg.get("vision_cfg") or {}).get("image_size", 224)
    preprocess = PreprocessConfig.from_open_clip(values.get("preprocess_cfg") or {}, image_size)
    config = config_from_open_clip(model_cfg, preprocess, directory=directory, weights_from_checkpoint=True)
    tokenizer, error = _tokenizer(lambda: tokenizer_from_open_clip_config(model_cfg, directory=directory))
    if (tokenizer is not None and getattr(config.text, "padding_mask", None) == "none"
            and tokenizer.pad_id != config.text.pad_id and tokenizer.pad_id < config.text.vocab_size):
        # open_clip's configs leave pad_id at 0 where the tower never reads it (SigLIP's, whose T5
        # tokenizer pads with 1); cliplab's pad_id marks padding in token-level outputs.
        config = dataclasses.replace(config, text=dataclasses.replace(config.text, pad_id=tokenizer.pad_id))
    return ForeignCheckpoint(open_clip_hub.FORMAT.name, directory, config,
                             _state_loader(lambda: file_source(weights, _unwrapped), _open_clip_rules_for(config),
                                           weights), tokenizer, error)


def _unwrapped(values: Any) -> Any:
    """A training checkpoint's state dict (open_clip saves {'epoch', 'state_dict', ...}), without
    the `module.` prefix DistributedDataParallel adds."""
    if isinstance(values, dict) and isinstance(values.get("state_dict"), dict):
        values = values["state_dict"]
    if isinstance(values, dict) and values and all(str(name).startswith("module.") for name in values):
        values = {name[len("module."):]: tensor for name, tensor in values.items()}
    return values


def architecture_model_cfg(model: str | dict | Path | ModelConfig) -> dict:
    """The open_clip model_cfg named by `model`: a built-in open_clip name, an open_clip model_cfg
    dict, a path to an open_clip_config.json / hub directory, or (written in open_clip's terms) a
    cliplab architecture: a ModelConfig, a registered name or a ModelConfig JSON."""
    if isinstance(model, dict):
        return model
    if isinstance(model, ModelConfig):
        return config_to_open_clip(model)
    name = str(model)
    if name in known_open_clip_names():
        return builtin_open_clip_config(name)
    path = Path(name)
    if path.is_dir():
        path = path / OPEN_CLIP_CONFIG
    if path.is_file() and path.name == OPEN_CLIP_CONFIG:
        values = read_json_object(path, str(path))
        return values.get("model_cfg", values)
    return config_to_open_clip(architecture_config(name))


def architecture_config(model: str | dict | Path | ModelConfig, checkpoint_dir: Path | None = None) -> ModelConfig:
    """The ModelConfig `model` names: a ModelConfig, an open_clip architecture (see
    `architecture_model_cfg`), or a cliplab registered name / ModelConfig JSON. checkpoint_dir: the
    directory of the checkpoint whose weights the architecture will hold (an open_clip one reads
    its towers' own files there first, and no tower starts from pretrained weights of its own)."""
    if isinstance(model, ModelConfig):
        return model
    name = str(model)
    path = Path(name)
    if isinstance(model, dict) or name in known_open_clip_names() or (path / OPEN_CLIP_CONFIG).is_file() \
            or path.name == OPEN_CLIP_CONFIG:
        return config_from_open_clip(architecture_model_cfg(model), directory=checkpoint_dir,
                                     weights_from_checkpoint=checkpoint_dir is not None)
    try:
        return get_model_config(name)
    except ValueError as error:
        raise UserError(f"model={name!r}: {error}") from None


def read_weights_object(path: Path) -> Any:
    """The object in a weights file, read whole; an open_clip training checkpoint's state dict
    unwrapped (`Location.weights_object`, which the file formats detect and read from)."""
    return _unwrapped(read_state_file(path))


def read_checkpoint_file(path: Path, model: str | dict | Path | ModelConfig | None = None, *,
                         preprocess_cfg: dict | None = None, state: Any = None) -> ForeignCheckpoint:
    """A weights file outside a checkpoint directory: OpenAI CLIP (architecture from the shapes
    unless `model` names one), open_clip (training checkpoint or state dict) or cliplab's own state
    dict (`cliplab_keys`); the last two need `model`. preprocess_cfg: open_clip's spelling of the
    preprocessing the weights were trained with (None: open_clip's defaults). state: the file's
    object when already read (`read_weights_object`)."""
    state = read_weights_object(path) if state is None else state
    if not isinstance(state, dict) or not state:
        raise NotACheckpointError(f"{path}: not a checkpoint cliplab reads: it holds a {type(state).__name__}")
    if is_cliplab_layout(state):
        return _read_cliplab_state(path, tensors_only(state, path), model)
    openai = is_openai_state_dict(state)
    if openai:
        state = without_openai_extras(state)
    state = tensors_only(state, path)
    if model is None and not openai:
        layout = "open_clip's" if any(name.startswith(("visual.", "text.")) for name in state) else "an unknown"
        raise NotACheckpointError(f"{path}: a state dict in {layout} layout, keys {sample_keys(state)}; an "
                                  f"open_clip checkpoint file needs its architecture: load(path, model='ViT-B-32') "
                                  f"(open_clip's name)")
    model_cfg = openai_model_cfg(state) if model is None else architecture_model_cfg(model)
    config = config_from_open_clip(model_cfg, PreprocessConfig.from_open_clip(
        preprocess_cfg or {}, (model_cfg.get("vision_cfg") or {}).get("image_size", 224)), directory=path.parent,
        weights_from_checkpoint=True)
    tokenizer, error = _tokenizer(lambda: tokenizer_from_open_clip_config(model_cfg))
    return ForeignCheckpoint((openai_format if openai else open_clip_checkpoint).FORMAT.name, path, config,
                             _state_loader(lambda: state_source(state), _open_clip_rules_for(config), path),
                             tokenizer, error)


def _read_cliplab_state(path: Path, state: dict[str, torch.Tensor],
                        model: str | dict | Path | ModelConfig | None) -> ForeignCheckpoint:
    """A state dict in cliplab's own names (`torch.save(model.state_dict())`), of the architecture
    `model` names (a cliplab or open_clip name, a model JSON, a ModelConfig); the tokenizer is the
    open_clip architecture's own, and none for cliplab's architectures (they train theirs)."""
    if model is None:
        raise UserError(f"{path}: a state dict in cliplab's layout, keys {sample_keys(state)}; it needs the "
                        f"architecture it was saved from: load(path, model='tiny-vit') (a name of "
                        f"cliplab.list_models(), or a model JSON such as a bundle's config.json)")
    config = architecture_config(model)
    if isinstance(model, str) and model in known_open_clip_names():
        tokenizer, error = _tokenizer(lambda: tokenizer_from_open_clip_config(builtin_open_clip_config(model)))
    else:
        tokenizer, error = None, ("a state dict holds no tokenizer and cliplab's architectures train theirs: "
                                  "give the run's tokenizer (--tokenizer), or save a bundle (cliplab.save)")
    return ForeignCheckpoint(cliplab_state_dict.FORMAT.name, path, config,
                             _state_loader(lambda: state_source(state), lambda shapes: CLIPLAB_RULES, path),
                             tokenizer, error)


def read_pretrained_tag(tag: PretrainedTag, model: str | dict | Path | ModelConfig) -> ForeignCheckpoint:
    """The weights of open_clip pretrained tag `tag` for the architecture `model` names (as open_clip
    builds it: QuickGELU switched on when the tag was trained with it, with a warning), with the
    tag's preprocessing. The architecture is checked before the weights are read through the Hugging
    Face cache (downloaded when not cached)."""
    where = f"pretrained tag {tag.tag!r} of {tag.model}"
    model_cfg = dict(architecture_model_cfg(model))
    if tag.quick_gelu and not model_cfg.get("quick_gelu", False):
        warnings.warn(f"pretrained tag {tag.tag!r} of {tag.model} was trained with QuickGELU: building {model} "
                      f"with QuickGELU, as {tag.model}-quickgelu is", UserWarning, stacklevel=2)
        model_cfg["quick_gelu"] = True
    try:
        config_from_open_clip(model_cfg)  # an architecture cliplab does not build is refused before any download
    except UnsupportedArchitectureError as error:
        raise UnsupportedArchitectureError(f"{where}: {error}") from None
    weights = repo_file(tag.repo_id, tag.weight_files, where=where)
    return read_checkpoint_file(weights, model_cfg, preprocess_cfg=tag.preprocess_cfg)


def _hf_weights(directory: Path) -> Path:
    weights = first_existing(directory, HF_WEIGHT_FILES)
    if weights is None:
        raise UserError(f"{directory} has a Hugging Face {HF_CONFIG_FILE} but no weights: expected one of "
                        f"{', '.join(HF_WEIGHT_FILES)}")
    return weights


def read_hf_directory(directory: Path, weights: Path | None = None) -> ForeignCheckpoint:
    """A transformers CLIPModel / SiglipModel / Siglip2Model directory (config.json, weights,
    tokenizer files, preprocessor_config.json)."""
    values = read_json_object(directory / HF_CONFIG_FILE, str(directory / HF_CONFIG_FILE))
    processor_file = directory / HF_PROCESSOR_CONFIG
    processor = read_json_object(processor_file, str(processor_file)) if processor_file.is_file() else None
    config = config_from_hf(values, processor)
    tokenizer, error = _tokenizer(lambda: hf_tokenizer_from_dir(directory, config.text.context_length))
    if tokenizer is not None and tokenizer.pad_id < config.text.vocab_size:
        # The text tower never masks padding here; pad_id only marks padding in token-level outputs.
        config = dataclasses.replace(config, text=dataclasses.replace(config.text, pad_id=tokenizer.pad_id))
    weights = weights or _hf_weights(directory)

    def open_source() -> WeightSource:
        shapes, read = hf_index_source(weights) if weights.name.endswith(".index.json") else file_source(weights)
        return without_position_ids(shapes), read

    rules = hf_model_rules(config, values["model_type"])
    return ForeignCheckpoint(hf.FORMAT.name, directory, config, _state_loader(open_source, lambda shapes: rules, weights),
                             tokenizer, error)


def check_architecture(config: ModelConfig, model: Any, path: Path) -> None:
    """UserError when the architecture `model` names differs from the one `path` carries."""
    wanted = architecture_config(model, path if path.is_dir() else path.parent)
    ignored = {"preprocess", "init_logit_scale", "init_logit_bias"}
    ours = {key: value for key, value in config.to_dict().items() if key not in ignored}
    theirs = {key: value for key, value in wanted.to_dict().items() if key not in ignored}
    for values in (ours, theirs):  # not architecture: padding id, where a fresh HF text tower starts from
        values["text"] = {key: value for key, value in values["text"].items()
                          if key not in ("pad_id", "hf_model_pretrained")}
    if ours != theirs:
        differing = sorted(f"{section}.{key}" for section in ours if isinstance(ours[section], dict)
                           for key in ours[section] if ours[section][key] != (theirs.get(section) or {}).get(key))
        raise UserError(f"model={model!r} differs from the architecture {path} holds "
                        f"({', '.join(differing[:5]) or 'kind / embed_dim'}); omit model= for this format")


def loaded_from_foreign(foreign: ForeignCheckpoint, request: LoadRequest) -> LoadedModel:
    """The `LoadedModel` of a foreign checkpoint read with `request` (the architecture `model=`
    names is checked against one the format carries)."""
    model, device = request.model, torch.device(request.device)
    if model is not None and format_named(foreign.format).architecture == "carried":
        check_architecture(foreign.config, model, foreign.path)
    if foreign.tokenizer is None and request.require_tokenizer:
        raise UserError(f"{foreign.path}: no tokenizer cliplab reads ({foreign.tokenizer_error}); pass "
                        "require_tokenizer=False to load the model without one")
    built = build_model_from(foreign, device, output_dict=request.output_dict)
    expected = built.state_dict()
    weights = (lambda: foreign.load_state(expected)) if device.type == "meta" else None
    return LoadedModel(built, image_transform(built.config.preprocess, train=False), foreign.tokenizer,
                       foreign.path, device, foreign.format, weights)


def describe_json(path: Path) -> str:
    """A few keys of a JSON file, for messages about a config nothing recognises."""
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return f"{path.name} (not readable JSON)"
    return f"{path.name} with keys {sample_keys(values) if isinstance(values, dict) else type(values).__name__}"
