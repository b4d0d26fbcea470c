"""Which tokenizer class transformers 5 makes of a Hugging Face directory, and the pipelines those
classes build in their own code.

transformers 5 runs a tokenizer.json as it is stored only for its generic classes
(`PreTrainedTokenizerFast`, `TokenizersBackend`) and the classes that do not rebuild it. The
classes below build the normalizer, pre-tokenizer, decoder and model options themselves and take
from tokenizer.json only the vocabulary (and merges), the post-processor, the padding and
truncation settings and (T5) SentencePiece's precompiled character map:

    class              model                        normalizer                 pre-tokenizer          padding
    T5Tokenizer        Unigram, unk id 2            the file's character map   whitespace, then "▁"   right
                                                                               before every word
    GemmaTokenizer     BPE with byte fallback,      " " -> "▁"                 split at " " (which    left
                       unknown runs fused                                      the normalizer removed)
    Siglip2Tokenizer   as Gemma                     lowercase, then as Gemma   as Gemma               left
    CLIPTokenizer      `tokenizer_hf_files.clip_bpe_backend` (from the vocabulary and merges)
    SiglipTokenizer    no tokenizer.json: SentencePiece's own model (`tokenizer_sentencepiece`)

The class is tokenizer_config.json's `tokenizer_class` (a "Fast" suffix dropped), except that a
directory whose config.json says model_type "siglip2" is read as Siglip2Tokenizer whatever the file
names (transformers 5 overrides the class Google's SigLIP2 repositories name). With no class named:
the model type's (clip: CLIPTokenizer, siglip: SiglipTokenizer, siglip2: Siglip2Tokenizer), else
from the files (a spiece.model without tokenizer.json: SiglipTokenizer; vocab.json + merges.txt
without tokenizer.json: CLIPTokenizer).

The added tokens of a rebuilt pipeline, in transformers' order: tokenizer_config.json's
`added_tokens_decoder` (else tokenizer.json's `added_tokens`), then the named special tokens (the
class's defaults for those the files do not name), then T5's sentinels `<extra_id_N>`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import AddedToken
from tokenizers import Tokenizer as BackendTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers

from cliplab.data.tokenizer_hf_files import (CLIP_DEFAULT_TOKENS, MERGES_TXT, TOKEN_KEYS, TOKENIZER_JSON,
                                             VOCAB_JSON, added_token, json_merges, read_json, token_content)
from cliplab.errors import UserError
from cliplab.file_names import HF_CONFIG_FILE

SPIECE_MODEL = "spiece.model"
SPIECE_UNDERLINE = "▁"
GEMMA_TOKENS = {"unk_token": "<unk>", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
                "mask_token": "<mask>"}
T5_TOKENS = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
SIGLIP_TOKENS = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>"}
T5_DEFAULT_EXTRA_IDS = 100
# The order transformers adds the named special tokens in (which fixes the ids of new ones).
NAMED_TOKEN_ORDER = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
MODEL_TYPE_CLASSES = {"clip": "CLIPTokenizer", "siglip": "SiglipTokenizer", "siglip2": "Siglip2Tokenizer"}
# Model types whose registered class transformers 5 uses whatever tokenizer_config.json names.
OVERRIDDEN_MODEL_TYPES = ("siglip2",)


def _stored_model(stored: dict, kind: str, tokenizer_class: str) -> dict:
    model = stored.get("model") or {}
    if model.get("type") != kind:
        raise UserError(f"{TOKENIZER_JSON}: {tokenizer_class} needs a {kind} model, found {model.get('type')!r}")
    return model


def _precompiled_charsmap(normalizer: dict | None) -> bytes | None:
    """The SentencePiece character map of a stored normalizer (alone or in a Sequence), or None."""
    if not normalizer:
        return None
    steps = normalizer.get("normalizers", []) if normalizer.get("type") == "Sequence" else [normalizer]
    for step in steps:
        if step.get("type") == "Precompiled" and step.get("precompiled_charsmap"):
            return base64.b64decode(step["precompiled_charsmap"])
    return None


def t5_pipeline(stored: dict, tokens: dict[str, str]) -> BackendTokenizer:
    model = _stored_model(stored, "Unigram", "T5Tokenizer")
    backend = BackendTokenizer(models.Unigram([tuple(entry) for entry in model["vocab"]], unk_id=2,
                                              byte_fallback=False))
    charsmap = _precompiled_charsmap(stored.get("normalizer"))
    if charsmap is not None:
        backend.normalizer = normalizers.Precompiled(charsmap)
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme="always", split=True)])
    backend.decoder = decoders.Metaspace(replacement=SPIECE_UNDERLINE, prepend_scheme="always", split=True)
    return backend


def gemma_pipeline(stored: dict, tokens: dict[str, str], lowercase: bool = False) -> BackendTokenizer:
    model = _stored_model(stored, "BPE", "GemmaTokenizer")
    backend = BackendTokenizer(models.BPE(vocab=model["vocab"], merges=json_merges(model), fuse_unk=True,
                                          unk_token=tokens["unk_token"], dropout=None, byte_fallback=True))
    backend.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
    backend.decoder = decoders.Sequence([decoders.Replace(SPIECE_UNDERLINE, " "), decoders.ByteFallback(),
                                         decoders.Fuse()])
    spaces = normalizers.Replace(" ", SPIECE_UNDERLINE)
    backend.normalizer = normalizers.Sequence([normalizers.Lowercase(), spaces]) if lowercase else spaces
    return backend


def siglip2_pipeline(stored: dict, tokens: dict[str, str]) -> BackendTokenizer:
    return gemma_pipeline(stored, tokens, lowercase=True)


def t5_extra_tokens(settings: dict) -> list[str]:
    """T5's sentinels: `extra_ids` (default 100) of them, unless the files list some already."""
    listed = settings.get("additional_special_tokens", settings.get("extra_special_tokens"))
    listed = [token_content(token) for token in listed] if isinstance(listed, list) else None
    count = settings.get("extra_ids", T5_DEFAULT_EXTRA_IDS)
    if listed is not None and any("<extra_id_" in token for token in listed):
        return listed
    return (listed or []) + [f"<extra_id_{index}>" for index in range(count)]


@dataclass(frozen=True)
class TokenizerClass:
    """A transformers tokenizer class as cliplab reads it. pipeline: (tokenizer.json's values, the
    special tokens) -> the class's own pipeline, or None for the stored one as it is. tokens: the
    special tokens it has when the files name none. padding_side: its default. extra_tokens:
    settings -> special tokens it adds beyond the named ones."""

    name: str
    pipeline: Callable[[dict, dict[str, str]], BackendTokenizer] | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    padding_side: str = "right"
    extra_tokens: Callable[[dict], list[str]] = lambda settings: []


TOKENIZER_CLASSES = {entry.name: entry for entry in (
    TokenizerClass("T5Tokenizer", t5_pipeline, T5_TOKENS, extra_tokens=t5_extra_tokens),
    TokenizerClass("GemmaTokenizer", gemma_pipeline, GEMMA_TOKENS, padding_side="left"),
    TokenizerClass("Siglip2Tokenizer", siglip2_pipeline, GEMMA_TOKENS, padding_side="left"),
    TokenizerClass("CLIPTokenizer", tokens=CLIP_DEFAULT_TOKENS),
    TokenizerClass("SiglipTokenizer", tokens=SIGLIP_TOKENS),
)}
STORED_PIPELINE = TokenizerClass("stored")


def has_tokenizer_files(directory: Path) -> bool:
    """Whether `directory` holds Hugging Face tokenizer files: tokenizer.json, a spiece.model, or
    vocab.json with merges.txt."""
    return ((directory / TOKENIZER_JSON).is_file() or (directory / SPIECE_MODEL).is_file()
            or ((directory / VOCAB_JSON).is_file() and (directory / MERGES_TXT).is_file()))


def _model_type(directory: Path) -> str | None:
    config = directory / HF_CONFIG_FILE
    return read_json(config).get("model_type") if config.is_file() else None


def tokenizer_class_name(directory: Path, settings: dict) -> str | None:
    """The class transformers 5 makes of `directory` (module docstring); None: a generic one."""
    model_type = _model_type(directory)
    named = settings.get("tokenizer_class")
    if model_type in OVERRIDDEN_MODEL_TYPES or (named is None and model_type in MODEL_TYPE_CLASSES):
        return MODEL_TYPE_CLASSES[model_type]
    if named is not None:
        return named.removesuffix("Fast")
    if not (directory / TOKENIZER_JSON).is_file():
        if (directory / SPIECE_MODEL).is_file():
            return "SiglipTokenizer"
        if (directory / VOCAB_JSON).is_file() and (directory / MERGES_TXT).is_file():
            return "CLIPTokenizer"
    return None


def tokenizer_class(name: str | None) -> TokenizerClass:
    """The table's entry for `name`; the stored pipeline for any other class."""
    return TOKENIZER_CLASSES.get(name, STORED_PIPELINE)


def _minimal_with(post_processor: dict | None) -> BackendTokenizer:
    """A tokenizer that holds nothing but `post_processor` (to read it without the vocabulary)."""
    return BackendTokenizer.from_str(json.dumps({
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
        "pre_tokenizer": None, "post_processor": post_processor, "decoder": None,
        "model": {"type": "WordLevel", "vocab": {}, "unk_token": ""}}))


def rebuilt_backend(entry: TokenizerClass, stored: dict, settings: dict, tokens: dict[str, str]) -> BackendTokenizer:
    """`entry`'s pipeline over the vocabulary of the parsed tokenizer.json `stored`, with its
    post-processor and the added tokens transformers gives it (module docstring). tokens: the
    named special tokens, the class's defaults included."""
    backend = entry.pipeline(stored, tokens)
    backend.post_processor = _minimal_with(stored.get("post_processor")).post_processor
    declared = settings.get("added_tokens_decoder")
    if declared:
        added = [added_token(declared[key]) for key in sorted(declared, key=int)]
    else:
        added = [added_token({key: value for key, value in entry.items() if key != "id"})
                 for entry in sorted(stored.get("added_tokens", []), key=lambda entry: entry["id"])]
    contents = {token.content for token in added}
    named = [tokens[key] for key in NAMED_TOKEN_ORDER if key in tokens]
    for token in [*named, *entry.extra_tokens(settings)]:
        if token not in contents:
            added.append(AddedToken(token, special=True, normalized=False))
            contents.add(token)
    backend.add_tokens(added)
    return backend


def class_tokens(entry: TokenizerClass, settings: dict) -> dict[str, str]:
    """The named special tokens: the files' (TOKEN_KEYS), over the class's defaults."""
    named = {key: token_content(settings[key]) for key in TOKEN_KEYS if settings.get(key) is not None}
    return {**entry.tokens, **named}
