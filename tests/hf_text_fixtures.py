"""Hugging Face text models without a network: small configs of each model type open_clip's HF text
towers know, small tokenizers of the classes their repositories use (trained here on random text),
the full-size configs of the ten open_clip configs' text models written from their published sizes,
and a Hugging Face cache holding them, so cliplab and open_clip read the same files by name."""

from __future__ import annotations

import json
import random
from pathlib import Path

from reference_libraries import transformers

# Small variants of each model type (what the exactness tests build); pad ids as the real models'.
SMALL_CONFIGS = {
    "roberta": ("RobertaConfig", dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                      intermediate_size=64, max_position_embeddings=80, type_vocab_size=1,
                                      pad_token_id=1, bos_token_id=0, eos_token_id=2)),
    "xlm-roberta": ("XLMRobertaConfig", dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                             intermediate_size=64, max_position_embeddings=80, type_vocab_size=1,
                                             pad_token_id=1, bos_token_id=0, eos_token_id=2)),
    "bert": ("BertConfig", dict(vocab_size=300, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=64, max_position_embeddings=80, pad_token_id=0)),
    "mt5": ("MT5Config", dict(vocab_size=300, d_model=32, d_kv=16, d_ff=48, num_layers=2, num_decoder_layers=1,
                              num_heads=2, relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
                              tie_word_embeddings=False, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)),
    "m2m_100": ("M2M100Config", dict(vocab_size=300, d_model=32, encoder_layers=2, decoder_layers=1,
                                     encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
                                     decoder_ffn_dim=64, max_position_embeddings=80, scale_embedding=True,
                                     encoder_layerdrop=0.0, decoder_layerdrop=0.0, pad_token_id=1, bos_token_id=0,
                                     eos_token_id=2, decoder_start_token_id=2)),
}

# The text models of open_clip 3.3.0's ten HF-text configs, at their published sizes (the numbers of
# their config.json files on the Hugging Face Hub), under the names those configs use.
FULL_SIZE_CONFIGS = {
    "roberta-base": ("RobertaConfig", dict(vocab_size=50265, hidden_size=768, num_hidden_layers=12,
                                           num_attention_heads=12, intermediate_size=3072, max_position_embeddings=514,
                                           type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                           layer_norm_eps=1e-5)),
    "xlm-roberta-base": ("XLMRobertaConfig", dict(vocab_size=250002, hidden_size=768, num_hidden_layers=12,
                                                  num_attention_heads=12, intermediate_size=3072,
                                                  max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                                                  bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)),
    "xlm-roberta-large": ("XLMRobertaConfig", dict(vocab_size=250002, hidden_size=1024, num_hidden_layers=24,
                                                   num_attention_heads=16, intermediate_size=4096,
                                                   max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                                                   bos_token_id=0, eos_token_id=2, layer_norm_eps=1e-5)),
    "google/mt5-base": ("MT5Config", dict(vocab_size=250112, d_model=768, d_kv=64, d_ff=2048, num_layers=12,
                                          num_decoder_layers=12, num_heads=12, feed_forward_proj="gated-gelu",
                                          tie_word_embeddings=False, pad_token_id=0, eos_token_id=1,
                                          decoder_start_token_id=0)),
    "google/mt5-xl": ("MT5Config", dict(vocab_size=250112, d_model=2048, d_kv=64, d_ff=5120, num_layers=24,
                                        num_decoder_layers=24, num_heads=32, feed_forward_proj="gated-gelu",
                                        tie_word_embeddings=False, pad_token_id=0, eos_token_id=1,
                                        decoder_start_token_id=0)),
    "facebook/nllb-200-distilled-600M": ("M2M100Config", dict(
        vocab_size=256206, d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
        decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096, max_position_embeddings=1024,
        scale_embedding=True, encoder_layerdrop=0.0, decoder_layerdrop=0.0, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, decoder_start_token_id=2)),
    "facebook/nllb-200-distilled-1.3B": ("M2M100Config", dict(
        vocab_size=256206, d_model=1024, encoder_layers=24, decoder_layers=24, encoder_attention_heads=16,
        decoder_attention_heads=16, encoder_ffn_dim=8192, decoder_ffn_dim=8192, max_position_embeddings=1024,
        scale_embedding=True, encoder_layerdrop=0.0, decoder_layerdrop=0.0, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, decoder_start_token_id=2)),
}


def hf_config(model_type: str, **changes):
    """A transformers config object of the small variant of `model_type`."""
    class_name, values = SMALL_CONFIGS[model_type]
    return getattr(transformers(), class_name)(**{**values, **changes})


def write_hf_config(directory: Path, model_type: str, **changes) -> Path:
    """config.json of the small variant of `model_type` in `directory`; -> the directory."""
    hf_config(model_type, **changes).save_pretrained(str(directory))
    return directory


def write_cache(cache: Path, configs: dict[str, tuple[str, dict]] = FULL_SIZE_CONFIGS) -> Path:
    """A Hugging Face hub cache (huggingface_hub's layout) holding config.json of each named model;
    point HF_HUB_CACHE at it. -> the cache directory."""
    library = transformers()
    for name, (class_name, values) in configs.items():
        snapshot = cache / f"models--{name.replace('/', '--')}" / "snapshots" / ("0" * 40)
        getattr(library, class_name)(**values).save_pretrained(str(snapshot))
        refs = cache / f"models--{name.replace('/', '--')}" / "refs"
        refs.mkdir(parents=True, exist_ok=True)
        (refs / "main").write_text("0" * 40)
    return cache


WORDS = ("a photo of the dog cat sat on mat hello world snake case ein Foto von einem Hund une d'un chat "
         "два кота 犬の写真 picture bird boot sneaker coat ¿qué? naïve café").split()


def random_corpus(count: int, seed: int) -> list[str]:
    chooser = random.Random(seed)
    return [" ".join(chooser.choice(WORDS) for _ in range(chooser.randint(1, 12))) for _ in range(count)]


def _unigram_pieces(specials: list[str]) -> list[tuple[str, float]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    backend = Tokenizer(models.Unigram())
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.train_from_iterator(random_corpus(400, seed=1), trainers.UnigramTrainer(
        vocab_size=160, special_tokens=specials, unk_token=specials[-1] if "<unk>" not in specials else "<unk>"))
    return [(piece, score) for piece, score in json.loads(backend.to_str())["model"]["vocab"]]


def _bpe_vocab(specials: list[str], byte_level: bool) -> tuple[dict[str, int], list[tuple[str, str]]]:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE(unk_token=None if byte_level else "<unk>"))
    backend.pre_tokenizer = (pre_tokenizers.ByteLevel(add_prefix_space=False) if byte_level
                             else pre_tokenizers.Metaspace())
    alphabet = pre_tokenizers.ByteLevel.alphabet() if byte_level else []
    backend.train_from_iterator(random_corpus(400, seed=2), trainers.BpeTrainer(
        vocab_size=400 if byte_level else 200, special_tokens=specials, initial_alphabet=alphabet))
    model = json.loads(backend.to_str())["model"]
    merges = [tuple(merge) if isinstance(merge, list) else tuple(merge.split(" ")) for merge in model["merges"]]
    return model["vocab"], merges


def write_tokenizers(root: Path) -> dict[str, Path]:
    """Small tokenizers of the classes the ten configs' models use, saved by transformers 5 (as their
    repositories hold them: tokenizer.json + tokenizer_config.json); -> model type -> directory."""
    library = transformers()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab, merges = _bpe_vocab([*specials, "<mask>"], byte_level=True)
    made = {"roberta": library.RobertaTokenizer(vocab=vocab, merges=merges),
            "xlm-roberta": library.XLMRobertaTokenizer(vocab=[*_unigram_pieces(specials), ("<mask>", 0.0)]),
            "mt5": library.T5Tokenizer(vocab=_unigram_pieces(["<pad>", "</s>", "<unk>"]), extra_ids=0)}
    vocab, merges = _bpe_vocab(specials, byte_level=False)
    made["m2m_100"] = library.NllbTokenizer(vocab=vocab, merges=merges, src_lang="eng_Latn")
    directories = {}
    for model_type, tokenizer in made.items():
        directories[model_type] = root / model_type
        tokenizer.save_pretrained(str(directories[model_type]))
    return directories


def use_cache(patch, cache: Path) -> None:
    """Point cliplab (HF_HUB_CACHE, read at each call) and transformers / huggingface_hub (their
    constants, read at import) at `cache`, offline, through the MonkeyPatch `patch`."""
    import huggingface_hub.constants

    patch.setenv("HF_HUB_CACHE", str(cache))
    patch.setenv("HF_HUB_OFFLINE", "1")
    patch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def write_t5_sentencepiece_dir(directory: Path) -> Path:
    """mT5's repository layout for its tokenizer: a SentencePiece unigram model (pad 0, eos 1,
    unk 2, no bos, as T5's) as spiece.model, tokenizer_config.json naming T5Tokenizer, no
    tokenizer.json; -> the directory."""
    import io

    import sentencepiece

    directory.mkdir(parents=True, exist_ok=True)
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(random_corpus(400, seed=3)), model_writer=model, vocab_size=120, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, hard_vocab_limit=False, character_coverage=1.0, minloglevel=2)
    (directory / "spiece.model").write_bytes(model.getvalue())
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
        "extra_ids": 0}))
    return directory
