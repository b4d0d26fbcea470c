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
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from cliplab.data.tokenizer_base import (TokenizerBase, as_text_list, check_context_length, frame_token_ids,
                                         write_descriptor)
from cliplab.data.tokenizer_hf_files import write_fast_tokenizer_files

TOKENIZER_FILE = "tokenizer.json"

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


class Tokenizer(TokenizerBase):
    """Text -> LongTensor[N, context_length] and back: the byte-level BPE cliplab trains.

    Build with `Tokenizer.train(...)` or `Tokenizer.from_file(...)`. Properties: `pad_id`, `sot_id`,
    `eot_id`, `mask_id`, `unk_id`, `special_ids` (all five), `vocab_size`, `context_length`.
    """

    kind = "cliplab_bpe"

    def __init__(self, backend: BackendTokenizer, context_length: int,
                 special_tokens: dict[str, str] | None = None):
        check_context_length(context_length)
        self.special_tokens = dict(SPECIAL_TOKENS, **(special_tokens or {}))
        unknown_roles = sorted(set(self.special_tokens) - set(SPECIAL_TOKENS))
        if unknown_roles:
            raise ValueError(f"special_tokens keys must be among {sorted(SPECIAL_TOKENS)}, "
                             f"got {unknown_roles}")
        role_ids = {}
        for role, token in self.special_tokens.items():
            token_id = backend.token_to_id(token)
            if token_id is None:
                raise ValueError(f"tokenizer has no {role} special token {token!r}; add it to the "
                                 f"vocabulary or map the role with special_tokens={{'{role}': ...}}")
            role_ids[role] = token_id
        super().__init__(role_ids=role_ids, special_ids=set(role_ids.values()),
                         context_length=context_length)
        self._backend = backend
        self._backend.no_padding()
        self._backend.no_truncation()

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
        backend = BackendTokenizer(models.BPE(unk_token=UNK_TOKEN))
        backend.normalizer = _normalizer(lowercase)
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency,
            special_tokens=list(SPECIAL_TOKENS.values()),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
        backend.train_from_iterator(texts, trainer=trainer)
        return cls(backend, context_length)

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
            backend = BackendTokenizer.from_file(str(path))
        except Exception as error:  # the Rust side raises a bare Exception on malformed JSON
            raise ValueError(f"{str(path)!r} is not a valid tokenizer.json: {error}") from error
        if context_length is None:
            truncation = backend.truncation
            if not truncation:
                raise ValueError(f"{str(path)!r} stores no context length (truncation.max_length); "
                                 "pass context_length")
            context_length = truncation["max_length"]
        return cls(backend, context_length, special_tokens)

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer.json file `path`; the context length travels as its truncation
        max_length. (`save_pretrained(directory)` writes what `load_tokenizer` reads.)"""
        self._backend.enable_truncation(max_length=self._context_length)
        try:
            self._backend.save(str(path))
        finally:
            self._backend.no_truncation()

    @property
    def vocab_size(self) -> int:
        return self._backend.get_vocab_size(with_added_tokens=True)

    def normalize(self, text: str) -> str:
        """The text as the tokenizer sees it (what decode returns)."""
        normalizer = self._backend.normalizer
        return normalizer.normalize_str(text) if normalizer is not None else text

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        """texts: one str or a list of N -> Long[N, context_length] (N = 1 for a single str)."""
        encodings = self._backend.encode_batch(as_text_list(texts), add_special_tokens=False)
        return frame_token_ids([encoding.ids for encoding in encodings],
                               self._resolve_context_length(context_length),
                               sot_id=self.sot_id, eot_id=self.eot_id, pad_id=self.pad_id)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """One sequence of ids -> text, stopping at the first end-of-text and dropping specials."""
        return self._backend.decode(self._text_ids(ids), skip_special_tokens=False)

    def save_pretrained(self, directory: str | os.PathLike) -> list[str]:
        """`directory`/tokenizer.json (as `save`) and the descriptor naming this kind."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.save(directory / TOKENIZER_FILE)
        roles = {role: token for role, token in self.special_tokens.items() if SPECIAL_TOKENS[role] != token}
        descriptor = write_descriptor(directory, self.kind, {"special_tokens": roles})
        return [TOKENIZER_FILE, descriptor]

    def write_hf_files(self, directory: str | os.PathLike) -> list[str]:
        """A generic fast tokenizer (`transformers.AutoTokenizer.from_pretrained(directory)`) giving
        these ids: the pipeline with a post-processor that frames `sot ... eot`, pad_token `<pad>`."""
        backend = BackendTokenizer.from_str(self._backend.to_str())
        sot, eot = self.special_tokens["sot"], self.special_tokens["eot"]
        backend.post_processor = processors.TemplateProcessing(
            single=f"{sot} $A {eot}", special_tokens=[(sot, self.sot_id), (eot, self.eot_id)])
        keys = {"sot": "bos_token", "eot": "eos_token", "pad": "pad_token", "mask": "mask_token",
                "unk": "unk_token"}
        tokens = {keys[role]: token for role, token in self.special_tokens.items()}
        return write_fast_tokenizer_files(directory, backend, tokens, self.context_length)
