"""A SentencePiece model framed as transformers' `SiglipTokenizer` frames it: what Google's Hugging
Face SigLIP repositories ship (`spiece.model`, no tokenizer.json).

`SentencePieceTokenizer(texts)` equals `SiglipTokenizer(texts, padding="max_length", truncation=True,
max_length=context_length).input_ids`. The pieces come from the `sentencepiece` package's own
encoder; around it, SiglipTokenizer's steps:

1. the text gets a leading "▁" (any "▁" in it becomes a space);
2. it is split at the special tokens (leftmost, longest first); a token with `lstrip` / `rstrip`
   strips the whitespace of the text before / after it, a `single_word` token standing inside a
   word is not split off;
3. each text piece is canonicalised (lowercased when `do_lower_case`, ASCII punctuation removed,
   whitespace runs -> one space, stripped) and encoded behind the unknown token's text, whose pieces
   are dropped again (so the model's dummy prefix never lands on the piece itself);
4. a "▁" piece directly before a special token is dropped; pieces -> ids (special tokens by their
   ids); cut to context_length - 1; `</s>` (eos) appended unless the ids already end on it; padded
   with the pad token (`</s>` by default) on `padding_side`.

There is no start-of-text token (the `sot` role is absent). open_clip's cleaning (`clean`) runs
before step 1 when set, as open_clip's HFTokenizer runs it before transformers' tokenizer.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import sentencepiece
import torch

from cliplab.data.tokenizer_base import TokenizerBase, as_text_list, write_descriptor
from cliplab.data.tokenizer_cleaning import CLEAN_MODES, clean_text
from cliplab.data.tokenizer_hf_files import (SPECIAL_TOKENS_MAP, TOKEN_KEYS, TOKENIZER_CONFIG, model_max_length,
                                             read_tokenizer_settings, token_content, write_json)
from cliplab.data.tokenizer_hf_classes import SIGLIP_TOKENS, SPIECE_MODEL, SPIECE_UNDERLINE
from cliplab.errors import UserError

SIGLIP_CONTEXT_LENGTH = 64  # SiglipTokenizer's model_max_length default
SIDES = ("right", "left")
_DROP_PUNCTUATION = str.maketrans("", "", string.punctuation)


@dataclass(frozen=True)
class SpecialToken:
    """An added token as transformers keeps it: its text, whether it is a special token (not text),
    and whether it strips the whitespace before (lstrip) / after (rstrip) it or only stands alone
    (single_word). A named token (eos, unk, pad) given as a string strips both sides."""

    content: str
    special: bool = True
    lstrip: bool = True
    rstrip: bool = True
    single_word: bool = False

    @classmethod
    def from_entry(cls, value, *, named: bool) -> "SpecialToken":
        """A tokenizer_config.json entry (a string or an AddedToken dict)."""
        if isinstance(value, dict):
            return cls(token_content(value), special=value.get("special", True), lstrip=value.get("lstrip", False),
                       rstrip=value.get("rstrip", False), single_word=value.get("single_word", False))
        return cls(value, lstrip=named, rstrip=named)


def canonicalize(text: str, lowercase: bool) -> str:
    """big_vision's prompt canonicalisation as SiglipTokenizer applies it to each text piece."""
    if lowercase:
        text = text.lower()
    return re.sub(r"\s+", " ", text.translate(_DROP_PUNCTUATION)).strip()


class SentencePieceTokenizer(TokenizerBase):
    """SiglipTokenizer's ids (module docstring) from a SentencePiece model.

    model_proto: the serialized model (spiece.model's bytes). tokens: Hugging Face token key ->
    token (eos_token, unk_token, pad_token; SiglipTokenizer's defaults for those missing).
    added: the added tokens (the named ones and any others), with their ids. lowercase: the
    `do_lower_case` of the canonicalisation. clean: open_clip's cleaning mode or None.
    """

    kind = "sentencepiece"

    def __init__(self, model_proto: bytes, *, tokens: dict[str, str], added: dict[int, SpecialToken],
                 context_length: int = SIGLIP_CONTEXT_LENGTH, lowercase: bool = True, clean: str | None = None,
                 padding_side: str = "right", truncation_side: str = "right"):
        if clean is not None and clean not in CLEAN_MODES:
            raise UserError(f"clean must be one of {CLEAN_MODES} or None, got {clean!r}")
        for name, side in (("padding_side", padding_side), ("truncation_side", truncation_side)):
            if side not in SIDES:
                raise UserError(f"{name} must be one of {SIDES}, got {side!r}")
        self._model_proto = bytes(model_proto)
        self._processor = sentencepiece.SentencePieceProcessor(model_proto=self._model_proto)
        self._tokens = {**SIGLIP_TOKENS, **{key: token for key, token in tokens.items() if token is not None}}
        self._added = dict(sorted(added.items()))
        self._added_ids = {token.content: token_id for token_id, token in self._added.items()}
        for key, token in self._tokens.items():
            if token not in self._added_ids:
                raise UserError(f"{key} {token!r} is neither in the SentencePiece model nor an added token")
        role_ids = {role: self._added_ids[self._tokens[key]]
                    for role, key in (("pad", "pad_token"), ("eot", "eos_token"), ("unk", "unk_token"))}
        special = {token_id for token_id, token in self._added.items() if token.special}
        super().__init__(role_ids=role_ids, special_ids=special, context_length=context_length)
        self.lowercase = bool(lowercase)
        self.clean = clean
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        contents = sorted(self._added_ids, key=len, reverse=True)
        self._split_pattern = re.compile("(" + "|".join(re.escape(content) for content in contents) + ")")
        self._unk_text = self._tokens["unk_token"]
        self._unk_pieces = len(self._processor.encode(self._unk_text, out_type=str))

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_processor"]  # rebuilt from the proto: pickles for dataloader workers
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._processor = sentencepiece.SentencePieceProcessor(model_proto=self._model_proto)

    @property
    def vocab_size(self) -> int:
        return max(self._processor.get_piece_size(), max(self._added) + 1)

    def _text_pieces(self, text: str) -> list[str]:
        pieces = self._processor.encode(self._unk_text + canonicalize(text, self.lowercase), out_type=str)
        return pieces[self._unk_pieces:] if len(pieces) >= self._unk_pieces else pieces

    def _parts(self, text: str) -> list[str]:
        """The text split at the added tokens, their stripping and single-word rules applied."""
        parts = self._split_pattern.split(text)
        for index, part in enumerate(parts):
            token = self._added.get(self._added_ids.get(part, -1))
            if token is None or index % 2 == 0:
                continue
            left, right = parts[index - 1], parts[index + 1] if index + 1 < len(parts) else ""
            if token.rstrip and right:
                parts[index + 1] = right.lstrip()
            if token.lstrip and left:
                parts[index - 1] = left.rstrip()
            if token.single_word:
                if left and left[-1] != " ":
                    parts[index - 1] += part
                    parts[index] = ""
                elif right and right[0] != " ":
                    parts[index + 1] = part + parts[index + 1]
                    parts[index] = ""
        return parts

    def encode_ids(self, text: str) -> list[int]:
        """One text -> its ids before framing (no eos, no padding)."""
        parts = self._parts(SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, " "))
        pieces: list[str] = []
        for index, part in enumerate(parts):
            if part and index % 2 == 1 and part in self._added_ids:
                pieces.append(part)
            elif part:
                pieces.extend(self._text_pieces(part))
        specials = {token.content for token in self._added.values() if token.special}
        if len(pieces) > 1 and pieces[0] == SPIECE_UNDERLINE and pieces[1] in specials:
            pieces = pieces[1:]
        return [self._added_ids.get(piece, self._processor.piece_to_id(piece)) for piece in pieces]

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        """texts: one str or N -> Long[N, context_length] (module docstring)."""
        texts = as_text_list(texts)
        if self.clean is not None:
            texts = [clean_text(text, self.clean) for text in texts]
        length = self._resolve_context_length(context_length)
        rows = []
        for text in texts:
            ids = self.encode_ids(text)
            if len(ids) + 1 > length:
                ids = ids[:length - 1] if self.truncation_side == "right" else ids[len(ids) - length + 1:]
            if not ids or ids[-1] != self.eot_id:
                ids.append(self.eot_id)
            padding = [self.pad_id] * (length - len(ids))
            rows.append(ids + padding if self.padding_side == "right" else padding + ids)
        return torch.tensor(rows, dtype=torch.long).reshape(len(texts), length)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Ids up to the first eos -> text, special tokens dropped."""
        pieces = [token_id for token_id in self._text_ids(ids) if token_id < self._processor.get_piece_size()]
        return self._processor.decode(pieces)

    @property
    def tokens(self) -> dict[str, str]:
        return dict(self._tokens)

    def settings(self) -> dict:
        """Everything besides the model that rebuilds this tokenizer (the descriptor's content)."""
        return {"context_length": self.context_length, "tokens": self.tokens,
                "added": {str(token_id): asdict(token) for token_id, token in self._added.items()},
                "lowercase": self.lowercase, "clean": self.clean, "padding_side": self.padding_side,
                "truncation_side": self.truncation_side}

    def save_pretrained(self, directory: str | os.PathLike) -> list[str]:
        """spiece.model and the descriptor with `settings()`."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / SPIECE_MODEL).write_bytes(self._model_proto)
        return [SPIECE_MODEL, write_descriptor(directory, self.kind, self.settings())]

    @classmethod
    def from_saved(cls, directory: Path, settings: dict) -> "SentencePieceTokenizer":
        """Inverse of `save_pretrained` (settings: the descriptor without its "kind")."""
        added = {int(token_id): SpecialToken(**token) for token_id, token in settings["added"].items()}
        options = {key: value for key, value in settings.items() if key != "added"}
        return cls((directory / SPIECE_MODEL).read_bytes(), added=added, **options)

    def write_hf_files(self, directory: str | os.PathLike) -> list[str]:
        """spiece.model, tokenizer_config.json and special_tokens_map.json that transformers'
        SiglipTokenizer reads back to the same ids."""
        if self.padding_side != "right" or self.truncation_side != "right":
            raise UserError("this tokenizer cannot be written as Hugging Face files: left padding or "
                            "truncation has no place in SiglipTokenizer's files")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / SPIECE_MODEL).write_bytes(self._model_proto)
        declared = {str(token_id): {"content": token.content, "lstrip": token.lstrip, "rstrip": token.rstrip,
                                    "single_word": token.single_word, "normalized": False, "special": token.special}
                    for token_id, token in self._added.items()}
        write_json(directory / SPECIAL_TOKENS_MAP, self.tokens)
        write_json(directory / TOKENIZER_CONFIG, {"tokenizer_class": "SiglipTokenizer",
                                                  "model_max_length": self.context_length,
                                                  "do_lower_case": self.lowercase, "added_tokens_decoder": declared,
                                                  **self.tokens})
        return [SPIECE_MODEL, TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP]


def _added_tokens(processor, settings: dict, tokens: dict[str, str]) -> dict[int, SpecialToken]:
    """The added tokens SiglipTokenizer holds, by id: tokenizer_config.json's added_tokens_decoder,
    then the named tokens, then additional_special_tokens (a token the model has keeps its piece id;
    a new one takes the next id after the model's pieces and the tokens already added)."""
    added: dict[int, SpecialToken] = {}
    for token_id, entry in (settings.get("added_tokens_decoder") or {}).items():
        added[int(token_id)] = SpecialToken.from_entry(entry, named=False)
    contents = {token.content for token in added.values()}
    named = [SpecialToken.from_entry(settings.get(key) or tokens[key], named=True)
             for key in TOKEN_KEYS if key in tokens]
    extra = [SpecialToken(token_content(value), lstrip=False, rstrip=False)
             for value in settings.get("additional_special_tokens") or settings.get("extra_special_tokens") or []]
    for token in (*named, *extra):
        if token.content in contents:
            continue
        piece_id = processor.piece_to_id(token.content)
        known = piece_id < processor.get_piece_size() and processor.id_to_piece(piece_id) == token.content
        token_id = piece_id if known else max(processor.get_piece_size(), max(added, default=-1) + 1)
        added[token_id] = token
        contents.add(token.content)
    return added


def sentencepiece_tokenizer_from_dir(directory: str | os.PathLike, context_length: int | None = None, *,
                                     clean: str | None = None) -> SentencePieceTokenizer:
    """SiglipTokenizer.from_pretrained(directory) as cliplab runs it: spiece.model with the settings
    of tokenizer_config.json / special_tokens_map.json. context_length: None -> model_max_length,
    else 64."""
    directory = Path(directory)
    if not (directory / SPIECE_MODEL).is_file():
        raise UserError(f"{directory} holds no {SPIECE_MODEL} (SiglipTokenizer's SentencePiece model)")
    settings = read_tokenizer_settings(directory)
    model_proto = (directory / SPIECE_MODEL).read_bytes()
    try:
        processor = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
    except RuntimeError as error:
        raise UserError(f"{directory / SPIECE_MODEL} is not a SentencePiece model: {error}") from error
    tokens = {**SIGLIP_TOKENS, **{key: token_content(settings[key]) for key in TOKEN_KEYS
                                  if settings.get(key) is not None}}
    if context_length is None:
        context_length = model_max_length(settings) or SIGLIP_CONTEXT_LENGTH
    try:
        return SentencePieceTokenizer(model_proto, tokens=tokens, added=_added_tokens(processor, settings, tokens),
                                      context_length=context_length, lowercase=settings.get("do_lower_case", True),
                                      clean=clean, padding_side=settings.get("padding_side", "right"),
                                      truncation_side=settings.get("truncation_side", "right"))
    except UserError as error:
        raise UserError(f"{directory}: {error}") from None
