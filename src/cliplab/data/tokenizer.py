"""Byte-level BPE tokenizer (Hugging Face `tokenizers`) with CLIP's fixed-length framing.

Every caption becomes `[sot, t_1, ..., t_k, eot, pad, ..., pad]` of exactly `context_length` ids;
long captions are cut so that end-of-text is always kept. Padding id is whatever `pad_id` is (0 for
tokenizers trained here), and models find end-of-text as the last non-pad position.

Text is normalised before tokenising (NFKC, optional lowercase, runs of whitespace -> one space,
stripped), and `decode(tokenizer(text)[0]) == tokenizer.normalize(text)` for any text that fits.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from tokenizers import Regex
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

PAD_TOKEN = "<pad>"
SOT_TOKEN = "<start_of_text>"
EOT_TOKEN = "<end_of_text>"
MASK_TOKEN = "<mask>"
UNK_TOKEN = "<unk>"
# The order fixes the ids of a freshly trained tokenizer: pad 0, sot 1, eot 2, mask 3, unk 4.
SPECIAL_TOKENS = {"pad": PAD_TOKEN, "sot": SOT_TOKEN, "eot": EOT_TOKEN, "mask": MASK_TOKEN,
                  "unk": UNK_TOKEN}


def _normalizer(lowercase: bool) -> normalizers.Normalizer:
    steps = [normalizers.NFKC()]
    if lowercase:
        steps.append(normalizers.Lowercase())
    steps += [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip()]
    return normalizers.Sequence(steps)


class Tokenizer:
    """Text -> LongTensor[N, context_length] and back.

    Build with `Tokenizer.train(...)` or `Tokenizer.from_file(...)`. Properties: `pad_id`, `sot_id`,
    `eot_id`, `mask_id`, `unk_id`, `special_ids`, `vocab_size`, `context_length`.
    """

    def __init__(self, hf_tokenizer: HFTokenizer, context_length: int,
                 special_tokens: dict[str, str] | None = None):
        if not isinstance(context_length, int) or isinstance(context_length, bool) or context_length < 2:
            raise ValueError(f"context_length must be an int >= 2 (room for start and end of text), "
                             f"got {context_length!r}")
        self.special_tokens = dict(SPECIAL_TOKENS, **(special_tokens or {}))
        unknown_roles = sorted(set(self.special_tokens) - set(SPECIAL_TOKENS))
        if unknown_roles:
            raise ValueError(f"special_tokens keys must be among {sorted(SPECIAL_TOKENS)}, "
                             f"got {unknown_roles}")
        self._ids = {}
        for role, token in self.special_tokens.items():
            token_id = hf_tokenizer.token_to_id(token)
            if token_id is None:
                raise ValueError(f"tokenizer has no {role} special token {token!r}; add it to the "
                                 f"vocabulary or map the role with special_tokens={{'{role}': ...}}")
            self._ids[role] = token_id
        self._hf = hf_tokenizer
        self._hf.no_padding()
        self._hf.no_truncation()
        self._context_length = context_length

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, context_length: int,
              lowercase: bool = True, min_frequency: int = 2) -> "Tokenizer":
        """Train byte-level BPE on `texts` up to `vocab_size` ids (specials and the 256 byte symbols
        included; a small corpus may stop below it: read `vocab_size` afterwards)."""
        minimum = 256 + len(SPECIAL_TOKENS)
        if not isinstance(vocab_size, int) or vocab_size < minimum:
            raise ValueError(f"vocab_size must be an int >= {minimum} (256 bytes + "
                             f"{len(SPECIAL_TOKENS)} specials), got {vocab_size!r}")
        if isinstance(texts, str):
            raise ValueError("texts must be an iterable of strings, got a single str")
        hf_tokenizer = HFTokenizer(models.BPE(unk_token=UNK_TOKEN))
        hf_tokenizer.normalizer = _normalizer(lowercase)
        hf_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf_tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS.values()),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        hf_tokenizer.train_from_iterator(texts, trainer=trainer)
        return cls(hf_tokenizer, context_length)

    @classmethod
    def from_file(cls, path: str | os.PathLike, context_length: int | None = None,
                  special_tokens: dict[str, str] | None = None) -> "Tokenizer":
        """Load a Hugging Face tokenizer.json. context_length defaults to the one `save` stored (the
        file's truncation max_length); special_tokens maps roles (pad, sot, eot, mask, unk) to the
        file's token strings when they differ from cliplab's."""
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"tokenizer file {str(path)!r} does not exist")
        try:
            hf_tokenizer = HFTokenizer.from_file(str(path))
        except Exception as error:  # the Rust side raises a bare Exception on malformed JSON
            raise ValueError(f"{str(path)!r} is not a valid tokenizer.json: {error}") from error
        if context_length is None:
            truncation = hf_tokenizer.truncation
            if not truncation:
                raise ValueError(f"{str(path)!r} stores no context length (truncation.max_length); "
                                 "pass context_length")
            context_length = truncation["max_length"]
        return cls(hf_tokenizer, context_length, special_tokens)

    def save(self, path: str | os.PathLike) -> None:
        """Write tokenizer.json; the context length travels as its truncation max_length."""
        self._hf.enable_truncation(max_length=self._context_length)
        try:
            self._hf.save(str(path))
        finally:
            self._hf.no_truncation()

    @property
    def pad_id(self) -> int:
        return self._ids["pad"]

    @property
    def sot_id(self) -> int:
        return self._ids["sot"]

    @property
    def eot_id(self) -> int:
        return self._ids["eot"]

    @property
    def mask_id(self) -> int:
        return self._ids["mask"]

    @property
    def unk_id(self) -> int:
        return self._ids["unk"]

    @property
    def special_ids(self) -> set[int]:
        return set(self._ids.values())

    @property
    def vocab_size(self) -> int:
        return self._hf.get_vocab_size(with_added_tokens=True)

    @property
    def context_length(self) -> int:
        return self._context_length

    def normalize(self, text: str) -> str:
        """The text as the tokenizer sees it (what decode returns)."""
        normalizer = self._hf.normalizer
        return normalizer.normalize_str(text) if normalizer is not None else text

    def __call__(self, texts: str | Sequence[str]) -> torch.Tensor:
        """texts: one str or a list of N -> Long[N, context_length] (N = 1 for a single str)."""
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, Sequence) or not all(isinstance(text, str) for text in texts):
            raise ValueError("texts must be a str or a sequence of str")
        encodings = self._hf.encode_batch(list(texts), add_special_tokens=False)
        tokens = torch.full((len(texts), self._context_length), self.pad_id, dtype=torch.long)
        room = self._context_length - 2
        for row, encoding in enumerate(encodings):
            ids = [self.sot_id, *encoding.ids[:room], self.eot_id]
            tokens[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        return tokens

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """One sequence of ids -> text, stopping at the first end-of-text and dropping specials."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}; use batch_decode")
            ids = ids.tolist()
        ids = list(ids)
        if self.eot_id in ids:
            ids = ids[:ids.index(self.eot_id)]
        special = self.special_ids
        return self._hf.decode([token_id for token_id in ids if token_id not in special],
                               skip_special_tokens=False)

    def batch_decode(self, ids: torch.Tensor | Sequence[Sequence[int]]) -> list[str]:
        """Long[N, T] (or N lists) -> N texts, each decoded like `decode`."""
        return [self.decode(row) for row in ids]

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, context_length={self.context_length})"
