"""The tokenizer a run uses, and where it came from. The first of these that applies:

1. the resumed checkpoint's (a resumed run keeps its ids);
2. `model.tokenizer` (--tokenizer): an open_clip model name (its tokenizer, `cliplab.get_tokenizer`),
   a tokenizer.json file trained by cliplab, or a tokenizer directory: what cliplab saves in runs
   and checkpoints, or Hugging Face tokenizer files (read as open_clip's HFTokenizer with the
   config's settings when the run's architecture is an open_clip one that names an HF tokenizer,
   e.g. the CLIPA configs; else as transformers' tokenizer of that directory);
3. the pretrained checkpoint's (--pretrained);
4. the open_clip architecture's own, for a built-in open_clip name (`cliplab.get_tokenizer(name)`:
   the OpenAI BPE at the tower's context length);
5. a byte-level BPE trained on the captions of the data, saved in the run directory with
   `cliplab.data.tokenizer_files.save_tokenizer` (cliplab's own models: `tiny`, ...).

A tokenizer is trained on the main process only (`run_on_main`: its failure, a manifest without the
caption column for instance, stops every rank at once); every rank then loads the same file, so all
tokenize identically. Whatever its source, the tokenizer must fit the text tower
(`cliplab.models.tokenizer_fit.check_tokenizer_fits`) and make sequences of exactly the tower's
context length (training a shorter one would leave positions untrained); with `force_context_length`
(--force-context-length) the chosen tokenizer is made to that length (`TokenizerBase.with_context_length`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cliplab.data import DataConfig
from cliplab.data.caption_corpus import caption_corpus
from cliplab.data.tokenizer import Tokenizer
from cliplab.data.tokenizer_base import DESCRIPTOR_FILE, TokenizerBase
from cliplab.data.tokenizer_files import load_tokenizer, save_tokenizer
from cliplab.data.tokenizer_hf import hf_tokenizer_from_dir
from cliplab.distributed.agreement import run_on_main
from cliplab.errors import UserError
from cliplab.models.config import ModelConfig, TextConfig
from cliplab.models.open_clip_config import builtin_open_clip_config, builtin_open_clip_names
from cliplab.models.tokenizer_fit import check_captions_fit, check_tokenizer_fits
from cliplab.open_clip_api import get_tokenizer
from cliplab.train.config import ConfigError, ModelSetupConfig

# Files that mark a directory of Hugging Face tokenizer files (cliplab's own saves carry DESCRIPTOR_FILE).
HF_TOKENIZER_MARKERS = ("tokenizer_config.json", "special_tokens_map.json", "vocab.json", "spiece.model")


@dataclass(frozen=True)
class RunTokenizer:
    """tokenizer: texts -> Long[N, context_length]; origin: where it came from, in words."""

    tokenizer: TokenizerBase
    origin: str


def _train_tokenizer(data: DataConfig, text: TextConfig, run_dir: Path) -> None:
    trained = Tokenizer.train(caption_corpus(data), vocab_size=text.vocab_size, context_length=text.context_length)
    save_tokenizer(trained, run_dir)


def _names_hf_tokenizer(architecture: str | None) -> bool:
    """Whether `architecture` is a built-in open_clip name whose text tower uses an HF tokenizer."""
    if architecture not in builtin_open_clip_names():
        return False
    return bool((builtin_open_clip_config(architecture).get("text_cfg") or {}).get("hf_tokenizer_name"))


def read_tokenizer(value: str, *, architecture: str | None, context_length: int) -> TokenizerBase:
    """The tokenizer `--tokenizer value` names (module docstring, 2.). architecture: the run's
    `model.name`; context_length: the text tower's."""
    if value in builtin_open_clip_names():
        return get_tokenizer(value, context_length)
    path = Path(value)
    if path.is_file():
        return Tokenizer.from_file(path)
    if not path.is_dir():
        raise ConfigError("model.tokenizer", value, "must be a tokenizer.json file, a tokenizer directory or an "
                          "open_clip model name (e.g. ViT-B-32)")
    if not (path / DESCRIPTOR_FILE).is_file() and any((path / name).is_file() for name in HF_TOKENIZER_MARKERS):
        if _names_hf_tokenizer(architecture):
            return get_tokenizer(architecture, context_length, directory=path)
        return hf_tokenizer_from_dir(path, context_length)
    return load_tokenizer(path)


def _chosen_tokenizer(setup: ModelSetupConfig, data: DataConfig, text: TextConfig, *, resume_from: Path | None,
                      run_dir: Path, pretrained_tokenizer: Any) -> RunTokenizer:
    if resume_from is not None:
        return RunTokenizer(load_tokenizer(resume_from), f"the resumed checkpoint {resume_from}")
    if setup.tokenizer is not None:
        tokenizer = read_tokenizer(setup.tokenizer, architecture=setup.name, context_length=text.context_length)
        return RunTokenizer(tokenizer, f"--tokenizer {setup.tokenizer}")
    if setup.pretrained is not None:
        if pretrained_tokenizer is None:
            raise ConfigError("model.tokenizer", None, f"must be given (--tokenizer): --pretrained {setup.pretrained} "
                              "comes without a tokenizer cliplab reads")
        return RunTokenizer(pretrained_tokenizer, f"the pretrained checkpoint {setup.pretrained}")
    if setup.name in builtin_open_clip_names():
        return RunTokenizer(get_tokenizer(setup.name, text.context_length),
                            f"open_clip's tokenizer for {setup.name}")
    run_on_main(lambda: _train_tokenizer(data, text, run_dir))
    return RunTokenizer(load_tokenizer(run_dir), f"a BPE trained on the captions of the training data, saved in {run_dir}")


def build_run_tokenizer(setup: ModelSetupConfig, data: DataConfig, model: ModelConfig, *,
                        resume_from: Path | None, run_dir: Path, pretrained_tokenizer: Any = None) -> RunTokenizer:
    """The run's tokenizer (module docstring), checked against `model`'s text tower. A collective
    when one is trained. pretrained_tokenizer: the tokenizer of the --pretrained checkpoint (None
    when the run has none, or the checkpoint comes without one)."""
    text = model.text
    chosen = _chosen_tokenizer(setup, data, text, resume_from=resume_from, run_dir=Path(run_dir),
                               pretrained_tokenizer=pretrained_tokenizer)
    if setup.force_context_length is not None and chosen.tokenizer.context_length != text.context_length:
        chosen = RunTokenizer(chosen.tokenizer.with_context_length(text.context_length),
                              f"{chosen.origin}, made to context {text.context_length} (--force-context-length)")
    source = f"the tokenizer ({chosen.origin})"
    check_tokenizer_fits(model, chosen.tokenizer, source)
    check_captions_fit(model, chosen.tokenizer, source)
    if chosen.tokenizer.context_length != text.context_length:
        raise UserError(f"{source} makes sequences of {chosen.tokenizer.context_length} tokens, the text tower "
                        f"expects context_length {text.context_length}")
    return chosen
