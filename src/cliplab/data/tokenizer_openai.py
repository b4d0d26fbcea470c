"""OpenAI's CLIP BPE (`bpe_simple_vocab_16e6`): the ids open_clip's `SimpleTokenizer` gives.

The vocabulary (49408 ids) is built from the merges file shipped in `cliplab/data/assets/`:

    0 .. 255        the 256 byte symbols, in byte-table order (printable bytes first, so id 0 is "!")
    256 .. 511      the same symbols carrying the end-of-word marker "</w>"
    512 .. 49405    one symbol per merge: the file's first 48894 merges, in order
    49406, 49407    "<start_of_text>", "<end_of_text>"

Encoding one caption:
    1. clean_text(text, "lower"): ftfy, HTML unescaped twice, whitespace collapsed, lowercased;
    2. split into words by WORD_PATTERN: the two special strings, English contractions, runs of
       letters, single digits, runs of other non-space characters (a caption that contains the
       literal "<end_of_text>" gets id 49407 there, as in open_clip);
    3. each word -> its UTF-8 bytes -> byte symbols, the last one marked "</w>";
    4. BPE: while some adjacent pair of symbols is a merge, join every occurrence of the pair with
       the lowest merge rank (left to right, without overlap);
    5. framing: `[49406, ids..., 49407]` padded with 0 to `context_length`; a longer caption keeps
       its first `context_length - 2` ids and still ends on 49407.

Id 0 is a real token ("!"): padding is the part of the row after the first 49407, not an id.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import regex
import torch

from cliplab.data.tokenizer_base import TokenizerBase, as_text_list, frame_token_ids, write_descriptor
from cliplab.data.tokenizer_cleaning import clean_text
from cliplab.data.tokenizer_hf_files import CLIP_EOT, CLIP_SOT, write_clip_tokenizer_files

VOCAB_PATH = Path(__file__).parent / "assets" / "bpe_simple_vocab_16e6.txt.gz"
MERGE_COUNT = 49152 - 256 - 2
END_OF_WORD = "</w>"
SOT_TOKEN = "<start_of_text>"
EOT_TOKEN = "<end_of_text>"
DEFAULT_CONTEXT_LENGTH = 77
WORD_PATTERN = regex.compile(
    "|".join(regex.escape(token) for token in (SOT_TOKEN, EOT_TOKEN))
    + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE)
_WORD_CACHE_LIMIT = 200_000


def byte_symbols() -> list[str]:
    """The 256 byte symbols in vocabulary order; symbol i stands for byte `byte_order()[i]`.

    Printable bytes stand for themselves; the 68 others (controls, space, NBSP, soft hyphen) get
    the characters 256, 257, ... so no symbol is whitespace or a control character.
    """
    return [chr(code) for code in _symbol_codes()]


def byte_order() -> list[int]:
    """The byte value behind each of the 256 byte symbols, in vocabulary order."""
    printable = _printable_bytes()
    return printable + [value for value in range(256) if value not in set(printable)]


def _printable_bytes() -> list[int]:
    return [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]


def _symbol_codes() -> list[int]:
    printable = _printable_bytes()
    others = [value for value in range(256) if value not in set(printable)]
    return printable + [256 + index for index in range(len(others))]


@dataclass(frozen=True)
class OpenAIVocabulary:
    """symbols: id -> symbol (49408); ids: symbol -> id; merges: (left, right) in rank order;
    byte_to_symbol: byte value -> symbol; symbol_to_byte: the inverse."""

    symbols: tuple[str, ...]
    ids: dict[str, int]
    merges: tuple[tuple[str, str], ...]
    ranks: dict[tuple[str, str], int]
    byte_to_symbol: dict[int, str]
    symbol_to_byte: dict[str, int]


@lru_cache(maxsize=1)
def openai_vocabulary() -> OpenAIVocabulary:
    """The parsed vocabulary, read once per process."""
    with gzip.open(VOCAB_PATH, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    merges = tuple(tuple(line.split()) for line in lines[1:1 + MERGE_COUNT])
    singles = byte_symbols()
    symbols = (*singles, *(symbol + END_OF_WORD for symbol in singles),
               *(left + right for left, right in merges), SOT_TOKEN, EOT_TOKEN)
    byte_to_symbol = dict(zip(byte_order(), singles))
    return OpenAIVocabulary(
        symbols=symbols, ids={symbol: index for index, symbol in enumerate(symbols)}, merges=merges,
        ranks={pair: rank for rank, pair in enumerate(merges)}, byte_to_symbol=byte_to_symbol,
        symbol_to_byte={symbol: value for value, symbol in byte_to_symbol.items()})


def merge_symbols(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply BPE merges to one word's symbols until no adjacent pair is a merge (step 4 above)."""
    while len(symbols) > 1:
        best = min(zip(symbols, symbols[1:]), key=lambda pair: ranks.get(pair, math.inf))
        if best not in ranks:
            break
        merged = []
        index = 0
        while index < len(symbols):
            if index + 1 < len(symbols) and (symbols[index], symbols[index + 1]) == best:
                merged.append(symbols[index] + symbols[index + 1])
                index += 2
            else:
                merged.append(symbols[index])
                index += 1
        symbols = merged
    return symbols


class OpenAIBPETokenizer(TokenizerBase):
    """OpenAI CLIP's tokenizer: ids equal to open_clip's `SimpleTokenizer` (module docstring).

    pad_id 0, sot_id 49406, eot_id 49407, vocab_size 49408; no mask and no unk token (every byte has
    a symbol). Build it with `openai_bpe_tokenizer(context_length)`.
    """

    kind = "openai_bpe"

    def __init__(self, vocabulary: OpenAIVocabulary, context_length: int = DEFAULT_CONTEXT_LENGTH):
        sot_id, eot_id = vocabulary.ids[SOT_TOKEN], vocabulary.ids[EOT_TOKEN]
        super().__init__(role_ids={"pad": 0, "sot": sot_id, "eot": eot_id},
                         special_ids={sot_id, eot_id}, context_length=context_length)
        self._vocabulary = vocabulary
        self._word_ids = self._empty_word_cache()

    def _empty_word_cache(self) -> dict[str, tuple[int, ...]]:
        """word -> ids; the special strings are words of their own id (never BPE-merged)."""
        return {SOT_TOKEN: (self.sot_id,), EOT_TOKEN: (self.eot_id,)}

    def __reduce__(self):
        # DataLoader workers get the context length only and share the process's parsed vocabulary.
        return openai_bpe_tokenizer, (self.context_length,)

    @property
    def vocab_size(self) -> int:
        return len(self._vocabulary.symbols)

    def encode(self, text: str) -> list[int]:
        """The ids of one text, without framing."""
        ids: list[int] = []
        for word in WORD_PATTERN.findall(clean_text(text, "lower")):
            word_ids = self._word_ids.get(word)
            if word_ids is None:
                word_ids = self._encode_word(word)
            ids.extend(word_ids)
        return ids

    def _encode_word(self, word: str) -> tuple[int, ...]:
        byte_to_symbol = self._vocabulary.byte_to_symbol
        symbols = [byte_to_symbol[value] for value in word.encode("utf-8")]
        symbols[-1] += END_OF_WORD
        word_ids = tuple(self._vocabulary.ids[symbol]
                         for symbol in merge_symbols(symbols, self._vocabulary.ranks))
        if len(self._word_ids) >= _WORD_CACHE_LIMIT:
            self._word_ids = self._empty_word_cache()
        self._word_ids[word] = word_ids
        return word_ids

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None) -> torch.Tensor:
        """texts: one str or N -> Long[N, context_length], open_clip's framing and padding (0)."""
        id_lists = [self.encode(text) for text in as_text_list(texts)]
        return frame_token_ids(id_lists, self._resolve_context_length(context_length),
                               sot_id=self.sot_id, eot_id=self.eot_id, pad_id=self.pad_id)

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Ids up to the first end-of-text -> text; word ends become spaces (the last is stripped)."""
        symbols = self._vocabulary.symbols
        joined = "".join(symbols[token_id] for token_id in self._text_ids(ids))
        raw = bytes(self._vocabulary.symbol_to_byte[char] for char in joined)
        return raw.decode("utf-8", errors="replace").replace(END_OF_WORD, " ").strip()

    def save_pretrained(self, directory) -> list[str]:
        """Only the context length is stored: the vocabulary ships with cliplab."""
        return [write_descriptor(directory, self.kind, {"context_length": self.context_length})]

    def write_hf_files(self, directory) -> list[str]:
        """CLIP tokenizer files of this vocabulary, specials renamed to CLIPTokenizer's
        `<|startoftext|>` / `<|endoftext|>`. transformers then pads with 49407 and does not run
        ftfy or HTML unescaping (docs/pretrained.md lists where its ids differ)."""
        renamed = {SOT_TOKEN: CLIP_SOT, EOT_TOKEN: CLIP_EOT}
        vocab = {renamed.get(symbol, symbol): index for index, symbol in enumerate(self._vocabulary.symbols)}
        return write_clip_tokenizer_files(directory, vocab, list(self._vocabulary.merges), self.context_length)


def openai_bpe_tokenizer(context_length: int = DEFAULT_CONTEXT_LENGTH) -> OpenAIBPETokenizer:
    """open_clip's default tokenizer, `SimpleTokenizer(context_length=context_length)`."""
    return OpenAIBPETokenizer(openai_vocabulary(), context_length)
