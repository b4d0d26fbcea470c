"""Export a cliplab model to the directories open_clip and Hugging Face transformers load (and a
cliplab bundle): the formats of `cliplab.pretrained.formats.FORMATS` that have an `export`.

    export(model, tokenizer, "out/oc", format="open_clip")  # open_clip.create_model("local-dir:out/oc")
    export(model, tokenizer, "out/hf", format="hf")         # transformers.CLIPModel / SiglipModel /
                                                            #   Siglip2Model .from_pretrained("out/hf")
    export(model, tokenizer, "out/b", format="bundle")      # cliplab.save's bundle

open_clip: open_clip_config.json (`model_cfg` from `config_to_open_clip`, `preprocess_cfg`) and
open_clip_model.safetensors, plus the files a tower's family writes beside them (a Hugging Face
text tower's config.json: `OpenClipForm.side_files`). The tokenizer is open_clip's choice from the
config (`open_clip_tokenizer_keys`): the OpenAI BPE is open_clip's default SimpleTokenizer (no keys);
any other tokenizer open_clip can run (SigLIP's T5 or SentencePiece, SigLIP2's Gemma, a Hugging
Face text tower's, CLIPA's BERT) is named by `text_cfg.hf_tokenizer_name` with its
`tokenizer_kwargs` (clean, strip_sep_token), as open_clip's own configs name them, and its files
are written into the directory, where `open_clip.get_tokenizer("local-dir:DIR")` and cliplab's
loader read them. `hf_tokenizer_name` is what open_clip reads under `hf-hub:`: pass the repository
id the directory will be uploaded to (default: a Hugging Face text tower's own model name, else
the directory's absolute path). Hugging Face: config.json, model.safetensors,
preprocessor_config.json and the tokenizer files `AutoTokenizer.from_pretrained` reads (a SigLIP2
directory's tokenizer must be SigLIP2's own: transformers reads any tokenizer there as
Siglip2Tokenizer, see `check_hf_tokenizer`). A model or tokenizer the target cannot represent is
refused before anything is written, naming what is missing. An existing non-empty directory is
written into only with `force=True`, which replaces the files of these names and leaves every
other file alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import nn

from cliplab.data.preprocess_config import write_hf_image_processor
from cliplab.data.tokenizer_files import (open_clip_tokenizer_kwargs, write_hf_tokenizer_files,
                                          write_open_clip_tokenizer_files)
from cliplab.data.tokenizer_hf import HFTokenizer
from cliplab.data.tokenizer_openai import OpenAIBPETokenizer
from cliplab.errors import UserError
from cliplab.models import CLIP, ModelConfig
from cliplab.models.families import family_of
from cliplab.models.open_clip_config import config_to_open_clip
from cliplab.models.tokenizer_fit import check_tokenizer_fits
from cliplab.models.wrappers import cliplab_model
from cliplab.pretrained.formats import EXPORT_FORMATS, export_form
from cliplab.pretrained.formats.hf import HF_CONFIG_FILE, HF_WEIGHT_FILES
from cliplab.pretrained.formats.open_clip_hub import HUB_WEIGHT_FILES, OPEN_CLIP_CONFIG
from cliplab.pretrained.hf_config import HF_PROCESSOR_CONFIG, config_to_hf, hf_model_type, naflex_processor_values
from cliplab.pretrained.hf_keys import hf_model_rules
from cliplab.pretrained.key_maps import from_cliplab
from cliplab.pretrained.open_clip_keys import open_clip_rules, open_clip_text_prefix

HF_PROCESSOR_TYPES = {"clip": "CLIPImageProcessor", "siglip": "SiglipImageProcessor"}
# transformers 5 reads the tokenizer of a directory of these model types as this class, whatever its files name.
HF_IMPOSED_TOKENIZERS = {"siglip2": "Siglip2Tokenizer"}


def prepare_directory(path: str | os.PathLike, force: bool) -> Path:
    """`path` as an empty or new directory; UserError when it holds files and `force` is False."""
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise UserError(f"--out {directory}: exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise UserError(f"--out {directory}: the directory exists and is not empty; nothing was written. "
                        "Pass --force (force=True) to write into it: files of the exported names are replaced, "
                        "every other file is kept")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _cpu_state(model: CLIP) -> dict[str, Any]:
    return {name: tensor.detach().to("cpu") for name, tensor in model.state_dict().items()}


def _write_json(path: Path, values: dict) -> None:
    path.write_text(json.dumps(values, indent=2) + "\n")


def _reads_as_openai_bpe(config: ModelConfig, tokenizer: Any) -> bool:
    """Whether open_clip's default SimpleTokenizer (the OpenAI BPE) gives the model `tokenizer`'s
    features. A CLIP tokenizer of Hugging Face's (a loaded HF CLIP's) gives the OpenAI BPE's ids up
    to end-of-text and pads with 49407 instead of 0, which a text tower that masks no padding and
    pools at end-of-text never reads."""
    if isinstance(tokenizer, OpenAIBPETokenizer):
        return True
    hf_clip = isinstance(tokenizer, HFTokenizer) and tokenizer.clip_pipeline and tokenizer.vocab_size == 49408
    return hf_clip and getattr(config.text, "padding_mask", None) == "none" and config.text.pool in ("argmax", "eos")


def open_clip_tokenizer_keys(config: ModelConfig, tokenizer: Any, hf_tokenizer_name: str | None,
                             directory: Path | None) -> dict:
    """The `text_cfg` keys under which open_clip's `get_tokenizer` (and cliplab's reader of the
    export) tokenizes as `tokenizer`, at text_cfg.context_length: none for the OpenAI BPE;
    `hf_tokenizer_name` (else a Hugging Face text tower's own name, else the export `directory`'s
    absolute path) and `tokenizer_kwargs` for a tokenizer whose files the export holds.
    UserError naming what open_clip cannot express."""
    if hf_tokenizer_name is not None and (not isinstance(hf_tokenizer_name, str) or not hf_tokenizer_name):
        raise UserError(f"hf_tokenizer_name names an open_clip export's tokenizer (a non-empty str), got "
                        f"{hf_tokenizer_name!r}")
    named_by_tower = config_to_open_clip(config)["text_cfg"].get("hf_tokenizer_name")
    if tokenizer.context_length != config.text.context_length:
        raise UserError(f"open_clip tokenizes to the model's text_cfg.context_length ({config.text.context_length}), "
                        f"and the model's tokenizer makes {tokenizer.context_length} ids")
    if not named_by_tower and _reads_as_openai_bpe(config, tokenizer):
        return {}
    try:
        kwargs = open_clip_tokenizer_kwargs(tokenizer)
    except UserError as error:
        raise UserError(f"open_clip cannot tokenize as the model's tokenizer ({type(tokenizer).__name__}): "
                        f"{error}; export with format='hf' instead") from None
    name = hf_tokenizer_name or named_by_tower or (str(directory.resolve()) if directory is not None else None)
    keys = {"hf_tokenizer_name": name}
    return {**keys, "tokenizer_kwargs": kwargs} if kwargs else keys


def check_open_clip_export(model: CLIP, tokenizer: Any, *, hf_tokenizer_name: str | None = None) -> None:
    """UserError when open_clip cannot represent `model` or would tokenize differently."""
    open_clip_tokenizer_keys(model.config, tokenizer, hf_tokenizer_name, None)


def export_open_clip(model: CLIP, config: ModelConfig, tokenizer: Any, directory: Path, *,
                     hf_tokenizer_name: str | None = None) -> list[str]:
    """hf_tokenizer_name: see `open_clip_tokenizer_keys`."""
    tokenizer_keys = open_clip_tokenizer_keys(config, tokenizer, hf_tokenizer_name, directory)
    model_cfg = config_to_open_clip(config)
    model_cfg["text_cfg"].update(tokenizer_keys)
    preprocess_cfg = config.preprocess.to_open_clip()
    state = from_cliplab(_cpu_state(model), open_clip_rules(config, open_clip_text_prefix(config)))
    weights = HUB_WEIGHT_FILES[0]
    save_file(state, str(directory / weights), metadata={"format": "pt"})
    _write_json(directory / OPEN_CLIP_CONFIG, {"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg})
    written = [OPEN_CLIP_CONFIG, weights]
    for side in ("vision", "text"):
        tower = getattr(config, side)
        for name, values in family_of(tower).open_clip.side_files(tower).items():
            _write_json(directory / name, values)
            written.append(name)
    if "hf_tokenizer_name" in tokenizer_keys:
        written += write_open_clip_tokenizer_files(tokenizer, directory)
    return written


def hf_special_ids(tokenizer: Any) -> dict[str, int | None]:
    """The ids config.json records: "bos" (None for a tokenizer without one), "eos", "pad"."""
    return {"bos": getattr(tokenizer, "sot_id", None), "eos": tokenizer.eot_id, "pad": tokenizer.pad_id}


def check_hf_tokenizer(model_type: str, tokenizer: Any) -> None:
    """UserError when transformers would read the exported tokenizer files as another tokenizer:
    a SigLIP2 directory's tokenizer is always read as Siglip2Tokenizer (Gemma's BPE, lowercased)."""
    imposed = HF_IMPOSED_TOKENIZERS.get(model_type)
    if imposed is not None and getattr(tokenizer, "tokenizer_class", None) != imposed:
        raise UserError(f"transformers reads the tokenizer of a {model_type} directory as {imposed}, which the "
                        f"model's tokenizer ({type(tokenizer).__name__}) is not; the export would tokenize "
                        "differently there")


def check_hf_export(model: CLIP, tokenizer: Any) -> None:
    """UserError when transformers cannot represent `model` or would tokenize differently."""
    config_to_hf(model.config, hf_special_ids(tokenizer))
    check_hf_tokenizer(hf_model_type(model.config), tokenizer)


def export_hf(model: CLIP, config: ModelConfig, tokenizer: Any, directory: Path) -> list[str]:
    model_type = hf_model_type(config)
    hf_config = config_to_hf(config, hf_special_ids(tokenizer))
    state = from_cliplab(_cpu_state(model), hf_model_rules(config, model_type))
    if model_type in HF_PROCESSOR_TYPES:  # refuses an unrepresentable one before writing
        config.preprocess.to_hf_image_processor(HF_PROCESSOR_TYPES[model_type])
    save_file(state, str(directory / HF_WEIGHT_FILES[0]), metadata={"format": "pt"})
    _write_json(directory / HF_CONFIG_FILE, hf_config)
    if model_type in HF_PROCESSOR_TYPES:
        write_hf_image_processor(config.preprocess, directory / HF_PROCESSOR_CONFIG, HF_PROCESSOR_TYPES[model_type])
    else:
        _write_json(directory / HF_PROCESSOR_CONFIG, naflex_processor_values(config))
    tokenizer_files = write_hf_tokenizer_files(tokenizer, directory)
    return [HF_CONFIG_FILE, HF_WEIGHT_FILES[0], HF_PROCESSOR_CONFIG, *tokenizer_files]


def export(model: nn.Module, tokenizer: Any, path: str | os.PathLike, format: str = "open_clip",
           force: bool = False, hf_tokenizer_name: str | None = None) -> Path:
    """Write `model` (+ tokenizer, preprocessing) to directory `path` in `format` (one of
    EXPORT_FORMATS: "open_clip", "hf", "bundle"); -> the directory. hf_tokenizer_name (open_clip
    only): the name an open_clip export gives a Hugging Face tokenizer (the repository id it will be
    uploaded to). See the module docstring."""
    form = export_form(format)
    options = {name: value for name, value in {"hf_tokenizer_name": hf_tokenizer_name}.items() if value is not None}
    for name in options:
        if name not in form.options:
            takers = [entry for entry in EXPORT_FORMATS if name in export_form(entry).options]
            raise UserError(f"{name} is an option of the {' / '.join(takers)} export, not of format={format!r}")
    model = cliplab_model(model)
    check_tokenizer_fits(model.config, tokenizer, "export")
    form.check(model, tokenizer, **options)  # refuse before the directory is touched
    directory = prepare_directory(path, force)
    form.write(model, tokenizer, directory, **options)
    return directory


__all__ = ["EXPORT_FORMATS", "export", "prepare_directory"]
