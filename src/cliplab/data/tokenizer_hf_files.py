"""Hugging Face tokenizer files: reading their settings, building the CLIP pipeline, writing them.

A Hugging Face tokenizer directory holds some of

    tokenizer.json              the `tokenizers` pipeline (normalizer, pre-tokenizer, model, post-processor)
    tokenizer_config.json       tokenizer_class, special tokens, model_max_length, padding/truncation side
    special_tokens_map.json     special tokens (older transformers wrote it; its entries win)
    vocab.json + merges.txt     a byte-level BPE vocabulary (CLIP's, GPT-2's)

Special tokens are plain strings or AddedToken dicts (`{"content": ..., "normalized": ...}`).

transformers 5 builds a `CLIPTokenizer` from the vocabulary and merges alone (taken from
tokenizer.json when present, else from vocab.json + merges.txt), with a pipeline fixed in its class:
NFC, every whitespace run -> " ", lowercase; split by CLIP's word pattern; byte-level symbols; BPE
with the end-of-word suffix "</w>"; `<|startoftext|> ... <|endoftext|>` added around the text.
`clip_bpe_backend` builds that pipeline. Files transformers writes load back to the same ids.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tokenizers import AddedToken, Regex
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE

from cliplab.errors import UserError

TOKENIZER_JSON = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"
SPECIAL_TOKENS_MAP = "special_tokens_map.json"
VOCAB_JSON = "vocab.json"
MERGES_TXT = "merges.txt"
CLIP_CLASSES = ("CLIPTokenizer", "CLIPTokenizerFast")
CLIP_SOT = "<|startoftext|>"
CLIP_EOT = "<|endoftext|>"
# CLIPTokenizer's defaults for tokens its files do not name.
CLIP_DEFAULT_TOKENS = {"bos_token": CLIP_SOT, "eos_token": CLIP_EOT, "pad_token": CLIP_EOT,
                       "unk_token": CLIP_EOT}
CLIP_WORD_PATTERN = (r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]"""
                     r"""|[^\s\p{L}\p{N}]+""")
TOKEN_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token", "mask_token", "cls_token",
              "sep_token")
# A role takes the first of its keys that the files name (BERT has cls/sep instead of bos/eos).
ROLE_KEYS = {"pad": ("pad_token",), "sot": ("bos_token", "cls_token"),
             "eot": ("eos_token", "sep_token"), "mask": ("mask_token",), "unk": ("unk_token",)}
# transformers' "no limit" model_max_length is about 1e30; anything this large means unset.
_UNSET_MAX_LENGTH = 10**9


def read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            values = json.load(handle)
    except (OSError, ValueError, RecursionError) as error:  # ValueError: not JSON, or not UTF-8 text
        raise UserError(f"{path}: cannot read it as JSON ({error})") from error
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a JSON object, found {type(values).__name__}")
    return values


def token_content(value) -> str | None:
    """A special-token entry (str, AddedToken dict or null) -> its string."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise UserError(f"a special token must be a string or an object with 'content', got {value!r}")


def added_token(value) -> AddedToken:
    """A token entry (str or AddedToken dict) -> special AddedToken; a dict's flags are kept, a
    string is matched in the raw text (normalized=False)."""
    flags = value if isinstance(value, dict) else {}
    return AddedToken(token_content(value), single_word=flags.get("single_word", False),
                      lstrip=flags.get("lstrip", False), rstrip=flags.get("rstrip", False),
                      normalized=flags.get("normalized", False), special=flags.get("special", True))


def read_tokenizer_settings(directory: Path) -> dict:
    """tokenizer_config.json with special_tokens_map.json's entries on top ({} when neither exists)."""
    settings = {}
    for name in (TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP):
        if (directory / name).is_file():
            settings.update(read_json(directory / name))
    return settings


def model_max_length(settings: dict) -> int | None:
    value = settings.get("model_max_length")
    if isinstance(value, int) and not isinstance(value, bool) and 2 <= value < _UNSET_MAX_LENGTH:
        return value
    return None


def json_merges(model: dict) -> list[tuple[str, str]]:
    """The merges of a tokenizer.json BPE model ("a b" strings in older files, pairs in newer)."""
    return [tuple(merge.split(" ")) if isinstance(merge, str) else tuple(merge)
            for merge in model.get("merges", [])]


def read_vocab_and_merges(directory: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The BPE vocabulary and merges: tokenizer.json's model when present, else vocab.json + merges.txt."""
    if (directory / TOKENIZER_JSON).is_file():
        model = read_json(directory / TOKENIZER_JSON).get("model", {})
        if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
            raise UserError(f"{directory / TOKENIZER_JSON}: a CLIP tokenizer needs a BPE model with a "
                            f"vocab, found model type {model.get('type')!r}")
        return model["vocab"], json_merges(model)
    vocab = read_json(directory / VOCAB_JSON)
    merges = []
    with open(directory / MERGES_TXT, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line or (line_number == 1 and line.startswith("#version")):
                continue
            parts = line.split(" ")
            if len(parts) != 2:
                raise UserError(f"{directory / MERGES_TXT} line {line_number}: expected two symbols "
                                f"separated by one space, got {line!r}")
            merges.append((parts[0], parts[1]))
    return vocab, merges


def clip_bpe_backend(vocab: dict[str, int], merges: list[tuple[str, str]], *, sot_token: str,
                     eot_token: str, unk_token: str, added_tokens: list[AddedToken]) -> BackendTokenizer:
    """CLIPTokenizer's pipeline (module docstring) over `vocab` / `merges`; `added_tokens` are the
    special tokens matched in the raw text before anything else."""
    for token in (sot_token, eot_token):
        if token not in vocab:
            raise UserError(f"the CLIP vocabulary lacks the special token {token!r}")
    backend = BackendTokenizer(BPE(vocab=vocab, merges=merges, dropout=None, continuing_subword_prefix="",
                                   end_of_word_suffix="</w>", fuse_unk=False, unk_token=unk_token))
    backend.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_WORD_PATTERN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(added_tokens)
    backend.post_processor = processors.RobertaProcessing(
        (eot_token, vocab[eot_token]), (sot_token, vocab[sot_token]), trim_offsets=False,
        add_prefix_space=False)
    return backend


def write_json(path: Path, values: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(values, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


def write_clip_tokenizer_files(directory: str | os.PathLike, vocab: dict[str, int],
                               merges: list[tuple[str, str]], context_length: int,
                               tokens: dict[str, str] | None = None) -> list[str]:
    """CLIP BPE files that `CLIPTokenizer.from_pretrained(directory)` reads: vocab.json,
    merges.txt, tokenizer.json, tokenizer_config.json, special_tokens_map.json. tokens: HF token
    key -> string, default CLIPTokenizer's (pad = `<|endoftext|>`)."""
    tokens = dict(tokens or CLIP_DEFAULT_TOKENS)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / VOCAB_JSON, vocab)
    with open(directory / MERGES_TXT, "w", encoding="utf-8") as handle:
        handle.write("#version: 0.2\n")
        handle.writelines(f"{left} {right}\n" for left, right in merges)
    backend = clip_bpe_backend(vocab, merges, sot_token=tokens["bos_token"], eot_token=tokens["eos_token"],
                               unk_token=tokens["unk_token"],
                               added_tokens=[added_token(token) for token in tokens.values()])
    backend.save(str(directory / TOKENIZER_JSON))
    write_json(directory / SPECIAL_TOKENS_MAP, tokens)
    write_json(directory / TOKENIZER_CONFIG, {"tokenizer_class": "CLIPTokenizer",
                                              "model_max_length": context_length, **tokens})
    return [VOCAB_JSON, MERGES_TXT, TOKENIZER_JSON, TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP]


def write_fast_tokenizer_files(directory: str | os.PathLike, backend: BackendTokenizer,
                               tokens: dict[str, str], context_length: int, *, padding_side: str = "right",
                               truncation_side: str = "right") -> list[str]:
    """A generic fast tokenizer (`AutoTokenizer.from_pretrained(directory)` runs tokenizer.json as
    it is): tokenizer.json, tokenizer_config.json, special_tokens_map.json. tokens: HF token key
    (TOKEN_KEYS) -> string; backend must add the specials itself (its post-processor). The padding
    and truncation sides ("right" or "left") are written out: transformers pads and truncates on
    tokenizer_config.json's sides, and a class it substitutes for the generic one (SigLIP2's)
    would otherwise pad on its own default side."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stored = BackendTokenizer.from_str(backend.to_str())
    stored.no_padding()
    stored.no_truncation()
    stored.save(str(directory / TOKENIZER_JSON))
    write_json(directory / SPECIAL_TOKENS_MAP, tokens)
    write_json(directory / TOKENIZER_CONFIG, {"tokenizer_class": "PreTrainedTokenizerFast",
                                              "model_max_length": context_length, "padding_side": padding_side,
                                              "truncation_side": truncation_side, **tokens})
    return [TOKENIZER_JSON, TOKENIZER_CONFIG, SPECIAL_TOKENS_MAP]
