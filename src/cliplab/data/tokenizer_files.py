"""Every tokenizer kind in and out of a directory, Hugging Face export, open_clip's tokenizer choice.

Kinds: "cliplab_bpe" (`tokenizer.Tokenizer`, trained by cliplab), "openai_bpe"
(`tokenizer_openai.OpenAIBPETokenizer`), "hf" (`tokenizer_hf.HFTokenizer`), "sentencepiece"
(`tokenizer_sentencepiece.SentencePieceTokenizer`, SigLIP's spiece.model).

A bundle, checkpoint or run directory holds, flat beside the model files:

    cliplab_tokenizer.json   {"kind": ..., settings}  written by every save
    tokenizer.json           the `tokenizers` pipeline (cliplab_bpe and hf kinds)
    spiece.model             the SentencePiece model (sentencepiece kind)

A directory with tokenizer.json and no descriptor is a format-1 bundle: the trained BPE, as cliplab
wrote it before the other kinds existed. `load_tokenizer` reads all of them.

An open_clip config naming a Hugging Face tokenizer (`text_cfg.hf_tokenizer_name`) finds its files
in the checkpoint's directory, else in the Hugging Face cache under that name (`HF_HOME`; never the
network), else stops with one line naming the files and where to put them.

The other way, for an open_clip export: `open_clip_tokenizer_kwargs` gives the
`text_cfg.tokenizer_kwargs` under which open_clip's HFTokenizer runs a cliplab tokenizer, and
`write_open_clip_tokenizer_files` the files it reads (`tokenizer_from_open_clip_config` reads both
back to an equal tokenizer):

    cliplab tokenizer                          open_clip
    HFTokenizer, clean=MODE                    tokenizer_kwargs.clean (omitted for "whitespace",
    SentencePieceTokenizer, clean=MODE           open_clip's default); the files: transformers' part
    HFTokenizer, strip_sep_token               tokenizer_kwargs.strip_sep_token
    clean=None, cliplab's trained BPE          refused: open_clip's HFTokenizer cleans every text
                                               first (ftfy, HTML entities, whitespace), which these
                                               tokenizers do not
"""

from __future__ import annotations

import os
from pathlib import Path

from cliplab.data.tokenizer import TOKENIZER_FILE, Tokenizer
from cliplab.data.tokenizer_base import DESCRIPTOR_FILE, TokenizerBase
from cliplab.data.tokenizer_cleaning import CLEAN_MODES
from cliplab.data.tokenizer_hf import HFTokenizer, open_clip_hf_tokenizer
from cliplab.data.tokenizer_hf_classes import SPIECE_MODEL, has_tokenizer_files
from cliplab.data.tokenizer_hf_files import TOKENIZER_CONFIG, TOKENIZER_JSON, VOCAB_JSON, read_json
from cliplab.data.tokenizer_openai import DEFAULT_CONTEXT_LENGTH, openai_bpe_tokenizer
from cliplab.data.tokenizer_sentencepiece import SentencePieceTokenizer
from cliplab.errors import UserError
from cliplab.pretrained.hf_cache import cached_repo_dir, hub_cache_dir

KINDS = ("cliplab_bpe", "openai_bpe", "hf", "sentencepiece")
# The files that mark a cached snapshot of a Hugging Face tokenizer (the first one cached is looked for).
HF_TOKENIZER_FILES = (TOKENIZER_JSON, SPIECE_MODEL, VOCAB_JSON)


def _check_tokenizer(tokenizer) -> None:
    if not isinstance(tokenizer, TokenizerBase):
        raise UserError(f"tokenizer must be a cliplab tokenizer ({', '.join(KINDS)}), "
                        f"got {type(tokenizer).__name__}")


def save_tokenizer(tokenizer: TokenizerBase, directory: str | os.PathLike) -> list[str]:
    """Write `tokenizer` into `directory` (created if needed); -> the file names written."""
    _check_tokenizer(tokenizer)
    return tokenizer.save_pretrained(directory)


def load_tokenizer(directory: str | os.PathLike) -> TokenizerBase:
    """The tokenizer `save_tokenizer` (or a format-1 bundle) left in `directory`."""
    directory = Path(directory)
    descriptor = directory / DESCRIPTOR_FILE
    if not descriptor.is_file():
        if (directory / TOKENIZER_FILE).is_file():
            return _from_file(Tokenizer.from_file, directory / TOKENIZER_FILE)
        raise UserError(f"{directory} holds no tokenizer: expected {DESCRIPTOR_FILE} (any kind) or "
                        f"{TOKENIZER_FILE} (a tokenizer trained by cliplab)")
    settings = read_json(descriptor)
    kind = settings.pop("kind", None)
    try:
        if kind == "cliplab_bpe":
            return Tokenizer.from_file(directory / TOKENIZER_FILE, special_tokens=settings["special_tokens"])
        if kind == "openai_bpe":
            return openai_bpe_tokenizer(settings["context_length"])
        if kind == "hf":
            return HFTokenizer.from_saved(directory, settings)
        if kind == "sentencepiece":
            return SentencePieceTokenizer.from_saved(directory, settings)
    except (KeyError, TypeError, ValueError) as error:
        raise UserError(f"{descriptor}: cannot rebuild the {kind} tokenizer "
                        f"({type(error).__name__}: {error})") from error
    raise UserError(f"{descriptor}: unknown tokenizer kind {kind!r}; this cliplab reads {list(KINDS)} "
                    "(a newer cliplab may have written it: upgrade cliplab)")


def _from_file(read, path: Path) -> TokenizerBase:
    try:
        return read(path)
    except ValueError as error:
        raise UserError(str(error)) from error


def write_hf_tokenizer_files(tokenizer: TokenizerBase, directory: str | os.PathLike) -> list[str]:
    """Hugging Face tokenizer files for `tokenizer` in `directory`; -> the file names written.

    OpenAI BPE and CLIP-pipeline HF tokenizers: CLIP files (`CLIPTokenizer.from_pretrained`). A
    tokenizer trained by cliplab, or another HF pipeline: a generic fast tokenizer
    (`AutoTokenizer.from_pretrained`). UserError for settings the files cannot hold.
    """
    _check_tokenizer(tokenizer)
    return tokenizer.write_hf_files(directory)


def find_hf_tokenizer(name: str, directory: str | os.PathLike | None) -> Path:
    """The directory holding the files of the Hugging Face tokenizer `name` (a hub id or a local
    path, as `text_cfg.hf_tokenizer_name` holds it): `directory` (the checkpoint's) when it has
    them, else `name` itself when it is such a directory, else its snapshot in the Hugging Face
    cache. None of them: one UserError naming the files and both places."""
    candidates = [Path(directory)] if directory is not None else []
    candidates.append(Path(name).expanduser())
    for candidate in candidates:
        if candidate.is_dir() and has_tokenizer_files(candidate):
            return candidate
    cached = cached_repo_dir(name, HF_TOKENIZER_FILES)
    if cached is not None:
        return cached
    files = f"{TOKENIZER_JSON} (or {SPIECE_MODEL}), {TOKENIZER_CONFIG} and special_tokens_map.json"
    fetch = f"`huggingface-cli download {name}` where a network allows, then copy the cache"
    if directory is None:
        raise UserError(f"the Hugging Face tokenizer {name!r} of this model is not in the Hugging Face cache "
                        f"{hub_cache_dir()}: put its files ({files}) there ({fetch}), or pass a directory holding them")
    raise UserError(f"the Hugging Face tokenizer {name!r} of this model is neither in {directory} nor in the Hugging "
                    f"Face cache {hub_cache_dir()}: put its files ({files}) into one of them ({fetch})")


def tokenizer_from_open_clip_config(model_cfg: dict, context_length: int | None = None,
                                    directory: str | os.PathLike | None = None) -> TokenizerBase:
    """The tokenizer open_clip's `get_tokenizer` picks for an open_clip `model_cfg`.

    text_cfg.hf_tokenizer_name set: open_clip's HFTokenizer (with text_cfg.tokenizer_kwargs) over
    the files `find_hf_tokenizer` finds (`directory`: the checkpoint's); otherwise the OpenAI BPE.
    context_length: the argument, else text_cfg.context_length, else 77.
    """
    if not isinstance(model_cfg, dict):
        raise UserError(f"model_cfg must be a dict (an open_clip model config), got {type(model_cfg).__name__}")
    text_cfg = model_cfg.get("text_cfg") or {}
    if context_length is None:
        context_length = text_cfg.get("context_length", DEFAULT_CONTEXT_LENGTH)
    if text_cfg.get("tokenizer_mode"):
        raise UserError(f"text_cfg.tokenizer_mode {text_cfg['tokenizer_mode']!r} is not supported")
    tokenizer_kwargs = text_cfg.get("tokenizer_kwargs") or {}
    hf_name = text_cfg.get("hf_tokenizer_name")
    if not hf_name:
        if tokenizer_kwargs:
            raise UserError(f"text_cfg.tokenizer_kwargs {sorted(tokenizer_kwargs)} are not supported "
                            "for the OpenAI BPE tokenizer")
        return openai_bpe_tokenizer(context_length)
    return open_clip_hf_tokenizer(find_hf_tokenizer(hf_name, directory), context_length, **tokenizer_kwargs)


def open_clip_tokenizer_kwargs(tokenizer: TokenizerBase) -> dict:
    """The `text_cfg.tokenizer_kwargs` under which open_clip's HFTokenizer, over the files
    `write_open_clip_tokenizer_files` writes, gives `tokenizer`'s ids (open_clip's defaults
    omitted, as its own configs omit them); UserError naming what open_clip cannot run."""
    _check_tokenizer(tokenizer)
    if not isinstance(tokenizer, (HFTokenizer, SentencePieceTokenizer)):
        raise UserError(f"open_clip's HFTokenizer cannot run this {tokenizer.kind} tokenizer: it cleans every text "
                        f"first (ftfy, HTML entities, whitespace; tokenizer_kwargs.clean one of {list(CLEAN_MODES)}), "
                        "and this tokenizer does not")
    if tokenizer.clean is None:
        raise UserError(f"open_clip's HFTokenizer cleans every text first (tokenizer_kwargs.clean one of "
                        f"{list(CLEAN_MODES)}: ftfy, HTML entities, whitespace), and the model's tokenizer "
                        "(read from Hugging Face files) cleans none")
    kwargs: dict = {} if tokenizer.clean == "whitespace" else {"clean": tokenizer.clean}
    if getattr(tokenizer, "strip_sep_token", False):
        kwargs["strip_sep_token"] = True
    return kwargs


def write_open_clip_tokenizer_files(tokenizer: TokenizerBase, directory: str | os.PathLike) -> list[str]:
    """The Hugging Face tokenizer files open_clip's HFTokenizer reads `tokenizer` from (its
    transformers part: open_clip's cleaning and sep stripping are `open_clip_tokenizer_kwargs`);
    -> the file names written."""
    open_clip_tokenizer_kwargs(tokenizer)
    if isinstance(tokenizer, HFTokenizer):
        tokenizer = tokenizer.without_open_clip_steps()
    return tokenizer.write_hf_files(directory)
