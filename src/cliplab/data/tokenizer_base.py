"""What every cliplab tokenizer kind shares: token roles, fixed-length framing, argument checks.

A tokenizer maps `str | list[str]` of N texts to `LongTensor[N, context_length]` and back. Its
tokens play roles: `pad` (fills the row after the text), `sot` / `eot` (start and end of text),
`mask` (masked language modelling), `unk` (out-of-vocabulary). A kind that has no token for a role
raises `MissingTokenError` when the role is read: the OpenAI BPE has no mask token, so an MLM
objective on it fails at start-up naming the missing token, never with a made-up id. Every kind has
pad and eot; SigLIP's tokenizers (T5's and Gemma's vocabularies as SigLIP frames them) start the
text with no token of their own, so they have no sot.
"""

from __future__ import annotations

import copy
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import torch

from cliplab.errors import UserError

ROLES = ("pad", "sot", "eot", "mask", "unk")
REQUIRED_ROLES = ("pad", "eot")
# Written by every save; names the kind and its settings. A directory without it holds a format-1
# tokenizer.json of the trained byte-level BPE.
DESCRIPTOR_FILE = "cliplab_tokenizer.json"


class MissingTokenError(UserError, AttributeError):
    """The tokenizer has no token for a role. Also an AttributeError, so `hasattr(tokenizer,
    "mask_id")` is False and `getattr(tokenizer, "mask_id", None)` is None for such a kind."""


def check_context_length(context_length: int, name: str = "context_length") -> int:
    if not isinstance(context_length, int) or isinstance(context_length, bool) or context_length < 2:
        raise ValueError(f"{name} must be an int >= 2 (room for start and end of text), "
                         f"got {context_length!r}")
    return context_length


def as_text_list(texts: str | Sequence[str]) -> list[str]:
    """One str -> [str]; a sequence of str -> list; anything else -> ValueError."""
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Sequence) or not all(isinstance(text, str) for text in texts):
        raise ValueError("texts must be a str or a sequence of str")
    return list(texts)


def frame_token_ids(id_lists: Sequence[Sequence[int]], context_length: int, *, sot_id: int,
                    eot_id: int, pad_id: int) -> torch.Tensor:
    """Rows `[sot, t_1, ..., t_k, eot, pad, ...]` -> Long[N, context_length].

    A text longer than `context_length - 2` tokens keeps its first `context_length - 2` and still
    ends on `eot` (open_clip's truncation).
    """
    room = context_length - 2
    rows = []
    for ids in id_lists:
        body = list(ids[:room])
        rows.append([sot_id, *body, eot_id] + [pad_id] * (room - len(body)))
    return torch.tensor(rows, dtype=torch.long).reshape(len(rows), context_length)


def write_descriptor(directory: str | os.PathLike, kind: str, settings: dict) -> str:
    """Write DESCRIPTOR_FILE = {"kind": kind, **settings} into `directory` (created if needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / DESCRIPTOR_FILE, "w") as handle:
        json.dump({"kind": kind, **settings}, handle, indent=2)
        handle.write("\n")
    return DESCRIPTOR_FILE


class TokenizerBase(ABC):
    """Roles, sizes and `batch_decode` for a tokenizer kind; each kind adds `__call__`, `decode`,
    `vocab_size` and `save_pretrained`.

    role_ids: role -> id for the roles the kind has (subset of ROLES; pad and eot required).
    special_ids: the ids that are not text (decode drops them; MLM never masks them).
    """

    kind = "base"

    def __init__(self, *, role_ids: dict[str, int], special_ids: set[int], context_length: int):
        unknown = sorted(set(role_ids) - set(ROLES))
        if unknown:
            raise ValueError(f"token roles must be among {ROLES}, got {unknown}")
        missing = [role for role in REQUIRED_ROLES if role not in role_ids]
        if missing:
            raise ValueError(f"a tokenizer needs pad and eot tokens; missing {missing}")
        self._role_ids = dict(role_ids)
        self._special_ids = frozenset(special_ids)
        self._context_length = check_context_length(context_length)

    def _role_id(self, role: str) -> int:
        if role not in self._role_ids:
            raise MissingTokenError(f"the {self.kind} tokenizer has no {role} token ({role}_id); "
                                    f"use a tokenizer that defines one")
        return self._role_ids[role]

    pad_id = property(lambda self: self._role_id("pad"), doc="Id that fills a row after the text.")
    sot_id = property(lambda self: self._role_id("sot"), doc="Start-of-text id.")
    eot_id = property(lambda self: self._role_id("eot"), doc="End-of-text id.")
    mask_id = property(lambda self: self._role_id("mask"), doc="Mask id (masked language modelling).")
    unk_id = property(lambda self: self._role_id("unk"), doc="Out-of-vocabulary id.")

    @property
    def special_ids(self) -> set[int]:
        return set(self._special_ids)

    @property
    def context_length(self) -> int:
        return self._context_length

    def with_context_length(self, context_length: int) -> "TokenizerBase":
        """The same tokenizer making sequences of `context_length` ids (a shallow copy; the
        vocabulary and its backend are shared). Every kind keeps its length here only, and frames,
        truncates and saves by it."""
        resized = copy.copy(self)
        resized._context_length = check_context_length(context_length)
        return resized

    def _resolve_context_length(self, context_length: int | None) -> int:
        if context_length is None:
            return self._context_length
        return check_context_length(context_length)

    def _text_ids(self, ids: Sequence[int] | torch.Tensor) -> list[int]:
        """The ids of one sequence up to its first end-of-text, specials dropped."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}; use batch_decode")
            ids = ids.tolist()
        ids = [int(token_id) for token_id in ids]
        if self.eot_id in ids:
            ids = ids[:ids.index(self.eot_id)]
        return [token_id for token_id in ids if token_id not in self._special_ids]

    @abstractmethod
    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        """N texts (one str: N = 1) -> Long[N, context_length] (the tokenizer's own when None)."""

    @abstractmethod
    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """One sequence of ids -> text, stopping at the first end-of-text, specials dropped."""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of ids, special tokens included."""

    @abstractmethod
    def save_pretrained(self, directory) -> list[str]:
        """Write the tokenizer into `directory` (created if needed) as `load_tokenizer` reads it;
        return the names of the files written."""

    @abstractmethod
    def write_hf_files(self, directory) -> list[str]:
        """Write Hugging Face tokenizer files giving the same ids; return the names written."""

    def batch_decode(self, ids: torch.Tensor | Sequence[Sequence[int]]) -> list[str]:
        """Long[N, T] (or N lists) -> N texts, each decoded like `decode`."""
        return [self.decode(row) for row in ids]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(vocab_size={self.vocab_size}, "
                f"context_length={self.context_length})")
