"""A tokenizer read from a Hugging Face tokenizer directory, as transformers and open_clip run it.

`hf_tokenizer_from_dir(directory)` gives the ids of `transformers.AutoTokenizer.from_pretrained(
directory)(texts, padding="max_length", max_length=context_length, truncation=True)`:

- the class: the one transformers 5 makes of the directory (`tokenizer_hf_classes`: the
  tokenizer_config.json's, overridden for a SigLIP2 model directory, else guessed from the files).
- the pipeline: for `CLIPTokenizer` the CLIP pipeline rebuilt from the vocabulary
  (`tokenizer_hf_files.clip_bpe_backend`); for T5's, Gemma's and SigLIP2's classes the pipeline
  those classes build in code over the stored vocabulary (`tokenizer_hf_classes`); for
  `SiglipTokenizer` (a spiece.model) a `tokenizer_sentencepiece.SentencePieceTokenizer`; for
  another class with a spiece.model and no tokenizer.json (mT5's repositories) transformers' own
  conversion (needs the `cliplab[hf]` extra; saving writes the converted pipeline); for any
  other class the stored tokenizer.json as it is. (transformers' own BERT, XLM-R, ... classes
  rebuild their pipelines too; the tokenizer.json that transformers writes for them holds the same
  pipeline.)
- framing: the text truncated to `context_length` minus the post-processor's specials (side from
  `truncation_side`), the specials added, padded to `context_length` with `pad_token` (side from
  `padding_side`: tokenizer_config.json's, else tokenizer.json's, else the class's: Gemma's and
  SigLIP2's pad on the left). CLIP pads with `<|endoftext|>`, so there `pad_id == eot_id`.

`open_clip_hf_tokenizer(directory, context_length, **tokenizer_kwargs)` is open_clip's `HFTokenizer`:
the same, after open_clip's cleaning (`clean`, default "whitespace"), and with every sep id replaced
by 0 when `strip_sep_token` (the CLIPA configs).
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer as BackendTokenizer

from cliplab.data.tokenizer_base import REQUIRED_ROLES, TokenizerBase, as_text_list, write_descriptor
from cliplab.data.tokenizer_cleaning import CLEAN_MODES, clean_text
from cliplab.data.tokenizer_hf_classes import (SPIECE_MODEL, TokenizerClass, class_tokens, has_tokenizer_files,
                                               rebuilt_backend, tokenizer_class, tokenizer_class_name)
from cliplab.data.tokenizer_hf_files import (MERGES_TXT, ROLE_KEYS, TOKEN_KEYS, TOKENIZER_JSON,
                                             VOCAB_JSON, added_token, clip_bpe_backend, json_merges,
                                             model_max_length, read_json, read_tokenizer_settings,
                                             read_vocab_and_merges, write_clip_tokenizer_files,
                                             write_fast_tokenizer_files)
from cliplab.data.tokenizer_sentencepiece import sentencepiece_tokenizer_from_dir
from cliplab.errors import UserError

DEFAULT_CONTEXT_LENGTH = 77
SIDES = ("right", "left")
OPEN_CLIP_TOKENIZER_KWARGS = ("clean", "strip_sep_token")


class HFTokenizer(TokenizerBase):
    """A `tokenizers` pipeline with transformers' framing and, optionally, open_clip's cleaning.

    tokens: Hugging Face token key (bos_token, eos_token, pad_token, unk_token, mask_token,
    cls_token, sep_token) -> token string; roles: pad <- pad_token, sot <- bos_token or cls_token,
    eot <- eos_token or sep_token, mask <- mask_token, unk <- unk_token.
    clip_pipeline: the backend is CLIPTokenizer's pipeline (decode turns "</w>" into spaces; the
    tokenizer can be written as CLIP tokenizer files). clean: an open_clip cleaning mode or None.
    tokenizer_class: the transformers class whose pipeline the backend is (None: not known; a
    tokenizer saved before cliplab recorded it).
    """

    kind = "hf"

    def __init__(self, backend: BackendTokenizer, *, tokens: dict[str, str], context_length: int,
                 clip_pipeline: bool, clean: str | None = None, strip_sep_token: bool = False,
                 padding_side: str = "right", truncation_side: str = "right",
                 tokenizer_class: str | None = None):
        unknown = sorted(set(tokens) - set(TOKEN_KEYS))
        if unknown:
            raise ValueError(f"tokens keys must be among {TOKEN_KEYS}, got {unknown}")
        if clean is not None and clean not in CLEAN_MODES:
            raise UserError(f"clean must be one of {CLEAN_MODES} or None, got {clean!r}")
        for name, side in (("padding_side", padding_side), ("truncation_side", truncation_side)):
            if side not in SIDES:
                raise UserError(f"{name} must be one of {SIDES}, got {side!r}")
        self._tokens = {key: token for key, token in tokens.items() if token is not None}
        token_ids = {}
        for key, token in self._tokens.items():
            token_id = backend.token_to_id(token)
            if token_id is None:
                raise UserError(f"{key} {token!r} is not in the tokenizer's vocabulary")
            token_ids[key] = token_id
        role_ids = {}
        for role, keys in ROLE_KEYS.items():
            present = [key for key in keys if key in token_ids]
            if present:
                role_ids[role] = token_ids[present[0]]
        missing = [f"{role} ({' or '.join(ROLE_KEYS[role])})" for role in REQUIRED_ROLES
                   if role not in role_ids]
        if missing:
            raise UserError(f"the tokenizer files name no token for {', '.join(missing)}; add them "
                            f"to tokenizer_config.json")
        if strip_sep_token and "sep_token" not in token_ids:
            raise UserError("strip_sep_token needs a sep_token, and the tokenizer files name none")
        added_special = {token_id for token_id, token in backend.get_added_tokens_decoder().items()
                         if token.special}
        super().__init__(role_ids=role_ids, special_ids=added_special | set(token_ids.values()),
                         context_length=context_length)
        self._backend = backend
        self._token_ids = token_ids
        self.clip_pipeline = bool(clip_pipeline)
        self.clean = clean
        self.strip_sep_token = bool(strip_sep_token)
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.tokenizer_class = tokenizer_class

    @property
    def vocab_size(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    @property
    def tokens(self) -> dict[str, str]:
        """Hugging Face token key -> token string, for the keys the files name."""
        return dict(self._tokens)

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        """texts: one str or N -> Long[N, context_length]: transformers' `padding="max_length",
        truncation=True` framing (after open_clip's cleaning when `clean` is set)."""
        texts = as_text_list(texts)
        if self.clean is not None:
            texts = [clean_text(text, self.clean) for text in texts]
        length = self._resolve_context_length(context_length)
        self._backend.enable_truncation(max_length=length, stride=0, strategy="longest_first",
                                        direction=self.truncation_side)
        self._backend.enable_padding(length=length, direction=self.padding_side, pad_id=self.pad_id,
                                     pad_type_id=0, pad_token=self._tokens["pad_token"])
        encodings = self._backend.encode_batch(texts, add_special_tokens=True)
        tokens = torch.tensor([encoding.ids for encoding in encodings], dtype=torch.long)
        tokens = tokens.reshape(len(texts), length)
        if self.strip_sep_token:
            tokens = torch.where(tokens == self._token_ids["sep_token"], 0, tokens)
        return tokens

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Ids up to the first end-of-text -> text, specials dropped (CLIP: word ends -> spaces)."""
        text = self._backend.decode(self._text_ids(ids), skip_special_tokens=True)
        if self.clip_pipeline:
            text = text.replace("</w>", " ").strip()
        return text

    def _stored_backend(self) -> BackendTokenizer:
        """A copy of the pipeline without the per-call padding and truncation."""
        stored = BackendTokenizer.from_str(self._backend.to_str())
        stored.no_padding()
        stored.no_truncation()
        return stored

    def settings(self) -> dict:
        """Everything besides the pipeline that rebuilds this tokenizer (the descriptor's content)."""
        return {"context_length": self.context_length, "tokens": self.tokens,
                "clip_pipeline": self.clip_pipeline, "clean": self.clean,
                "strip_sep_token": self.strip_sep_token, "padding_side": self.padding_side,
                "truncation_side": self.truncation_side, "tokenizer_class": self.tokenizer_class}

    def save_pretrained(self, directory: str | os.PathLike) -> list[str]:
        """tokenizer.json (the pipeline) and the descriptor with `settings()`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._stored_backend().save(str(directory / TOKENIZER_JSON))
        return [TOKENIZER_JSON, write_descriptor(directory, self.kind, self.settings())]

    @classmethod
    def from_saved(cls, directory: Path, settings: dict) -> "HFTokenizer":
        """Inverse of `save_pretrained` (settings: the descriptor without its "kind")."""
        backend = BackendTokenizer.from_file(str(directory / TOKENIZER_JSON))
        return cls(backend, **settings)

    def without_open_clip_steps(self) -> "HFTokenizer":
        """This tokenizer without open_clip's steps around transformers' tokenizer (no cleaning
        before, sep ids kept after): what open_clip's HFTokenizer wraps, with its `clean` and
        `strip_sep_token` given beside (a model config's text_cfg.tokenizer_kwargs)."""
        return HFTokenizer(self._stored_backend(), **{**self.settings(), "clean": None, "strip_sep_token": False})

    def write_hf_files(self, directory: str | os.PathLike) -> list[str]:
        """Hugging Face files giving the same ids (open_clip's cleaning aside, which they cannot
        hold): CLIP tokenizer files for a CLIP pipeline, else a generic fast tokenizer with its
        padding and truncation sides (load it with AutoTokenizer)."""
        if self.strip_sep_token:
            raise UserError("this tokenizer cannot be written as Hugging Face files: strip_sep_token (open_clip's "
                            "zeroing of sep ids) has no place in them")
        if self.clip_pipeline:
            if self.padding_side != "right" or self.truncation_side != "right":
                raise UserError("this tokenizer cannot be written as Hugging Face files: CLIPTokenizer's files "
                                "pad and truncate on the right")
            model = json.loads(self._backend.to_str())["model"]
            return write_clip_tokenizer_files(directory, model["vocab"], json_merges(model),
                                              self.context_length, tokens=self.tokens)
        return write_fast_tokenizer_files(directory, self._stored_backend(), self.tokens, self.context_length,
                                          padding_side=self.padding_side, truncation_side=self.truncation_side)


def _clip_backend(directory: Path, settings: dict, tokens: dict[str, str]) -> BackendTokenizer:
    vocab, merges = read_vocab_and_merges(directory)
    # transformers keeps the flags of added_tokens_decoder entries; other special tokens are
    # matched in the raw text (normalized=False) whatever flags their own entries state.
    declared = [added_token(entry) for entry in settings.get("added_tokens_decoder", {}).values()]
    contents = {token.content for token in declared}
    declared += [added_token(token) for token in dict.fromkeys(tokens.values()) if token not in contents]
    return clip_bpe_backend(vocab, merges, sot_token=tokens["bos_token"], eot_token=tokens["eos_token"],
                            unk_token=tokens["unk_token"], added_tokens=declared)


def _json_backend(directory: Path, entry: TokenizerClass, settings: dict, stored: dict,
                  tokens: dict[str, str]) -> BackendTokenizer:
    """tokenizer.json's pipeline: rebuilt by `entry`'s class, or as stored."""
    try:
        if entry.pipeline is not None:
            return rebuilt_backend(entry, stored, settings, tokens)
        return BackendTokenizer.from_str(json.dumps(stored))
    except UserError as error:
        raise UserError(f"{directory}: {error}") from None
    except Exception as error:  # the Rust side raises a bare Exception on a malformed file
        raise UserError(f"{directory / TOKENIZER_JSON} is not a valid tokenizer.json: {error}") from error


def _converted_backend(directory: Path, class_name: str | None) -> tuple[BackendTokenizer, dict[str, str]]:
    """transformers' own pipeline and special tokens for a spiece.model without tokenizer.json read
    as another class than SigLIP's (mT5's repositories: T5Tokenizer): `AutoTokenizer` converts it,
    so the ids are transformers' (and open_clip's HFTokenizer's) by construction."""
    try:
        transformers = importlib.import_module("transformers")
    except ImportError as error:
        raise UserError(f"{directory}: {class_name or 'this tokenizer class'} from {SPIECE_MODEL} without "
                        f"{TOKENIZER_JSON} is converted by transformers, which is not installed: "
                        "pip install 'cliplab[hf]'") from error
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
    tokens = {key: str(getattr(tokenizer, key)) for key in TOKEN_KEYS if getattr(tokenizer, key, None) is not None}
    return BackendTokenizer.from_str(tokenizer.backend_tokenizer.to_str()), tokens


def hf_tokenizer_from_dir(directory: str | os.PathLike, context_length: int | None = None, *,
                          clean: str | None = None, strip_sep_token: bool = False) -> TokenizerBase:
    """The tokenizer in a Hugging Face tokenizer directory (module docstring): an `HFTokenizer`,
    or for SiglipTokenizer's files (spiece.model) a `SentencePieceTokenizer`.

    context_length: None -> tokenizer_config.json's model_max_length, else 77 (SigLIP: 64).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"tokenizer directory {directory} does not exist or is not a directory")
    if not has_tokenizer_files(directory):
        raise UserError(f"{directory} holds no Hugging Face tokenizer: expected {TOKENIZER_JSON}, "
                        f"{VOCAB_JSON} and {MERGES_TXT}, or {SPIECE_MODEL}")
    settings = read_tokenizer_settings(directory)
    class_name = tokenizer_class_name(directory, settings)
    if class_name == "SiglipTokenizer":
        if strip_sep_token:
            raise UserError(f"{directory}: strip_sep_token needs a sep_token, and SiglipTokenizer has none")
        return sentencepiece_tokenizer_from_dir(directory, context_length, clean=clean)
    converted = not (directory / TOKENIZER_JSON).is_file() and class_name != "CLIPTokenizer"
    if converted and not (directory / SPIECE_MODEL).is_file():
        raise UserError(f"{directory}: {class_name or 'this tokenizer class'} needs {TOKENIZER_JSON}")
    entry = tokenizer_class(class_name)
    tokens = class_tokens(entry, settings)
    stored = {} if class_name == "CLIPTokenizer" or converted else read_json(directory / TOKENIZER_JSON)
    if converted:
        backend, tokens = _converted_backend(directory, class_name)
    elif class_name == "CLIPTokenizer":
        backend = _clip_backend(directory, settings, tokens)
    else:
        backend = _json_backend(directory, entry, settings, stored, tokens)
        if "pad_token" not in tokens and stored.get("padding"):
            tokens["pad_token"] = stored["padding"]["pad_token"]
    # Sides: tokenizer_config.json's, else tokenizer.json's, else the class's.
    padding_side = settings.get("padding_side") or (stored.get("padding") or {}).get("direction") or entry.padding_side
    truncation_side = settings.get("truncation_side") or (stored.get("truncation") or {}).get("direction") or "right"
    if context_length is None:
        context_length = model_max_length(settings) or DEFAULT_CONTEXT_LENGTH
    try:
        return HFTokenizer(backend, tokens=tokens, context_length=context_length,
                           clip_pipeline=class_name == "CLIPTokenizer", clean=clean, strip_sep_token=strip_sep_token,
                           padding_side=padding_side, truncation_side=truncation_side, tokenizer_class=class_name)
    except UserError as error:
        raise UserError(f"{directory}: {error}") from None


def open_clip_hf_tokenizer(directory: str | os.PathLike, context_length: int,
                           **tokenizer_kwargs) -> TokenizerBase:
    """open_clip's `HFTokenizer(directory, context_length, **tokenizer_kwargs)`; tokenizer_kwargs
    are a model config's `text_cfg.tokenizer_kwargs` (clean, default "whitespace";
    strip_sep_token, default False)."""
    unknown = sorted(set(tokenizer_kwargs) - set(OPEN_CLIP_TOKENIZER_KWARGS))
    if unknown:
        raise UserError(f"tokenizer_kwargs {unknown} are not supported; cliplab reads "
                        f"{list(OPEN_CLIP_TOKENIZER_KWARGS)}")
    return hf_tokenizer_from_dir(directory, context_length,
                                 clean=tokenizer_kwargs.get("clean", "whitespace"),
                                 strip_sep_token=bool(tokenizer_kwargs.get("strip_sep_token", False)))
