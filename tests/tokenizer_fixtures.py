"""Texts and Hugging Face tokenizer directories for the tokenizer tests, built offline.

`clip_vocab_dir`: OpenAI's CLIP vocabulary as vocab.json + merges.txt, taken from open_clip's own
`SimpleTokenizer` (encoder and merge ranks), with the specials renamed as CLIPTokenizer spells them.
`wordpiece_dirs`: a small WordPiece tokenizer trained with `tokenizers`, saved by transformers both as
a generic `PreTrainedTokenizerFast` and as a `BertTokenizer` (the class of bert-base-uncased, which
open_clip's CLIPA configs name).
"""

from __future__ import annotations

import json
import random

import pytest

from reference_libraries import open_clip, transformers

ADVERSARIAL_TEXTS = [
    "“Curly” quotes and ‘single’ ones",
    "&amp;amp; &lt;b&gt;bold&lt;/b&gt; &quot;quoted&quot; &#39;apos&#39; &eacute;",
    "ﬁne ﬂour, ﬀ and ﬃ ligatures",
    "emoji 😀👍🏽 🇫🇷 ❤️ family 👨‍👩‍👧",
    "日本語のテキスト 中文字符 한국어 문장",
    "tabs\tand\nnewlines\r\n  and\u00a0no-break\u2003spaces ",
    "A very long caption that goes on " * 12,
    "a literal <|endoftext|> in the middle",
    "",
    "<|ENDOFTEXT|> <|startoftext|>",
    "open_clip's own <end_of_text> and <start_of_text>",
    "x<<end_of_text>",
    "Ｆｕｌｌ ｗｉｄｔｈ ＡＢＣ１２３",
    "don't I'LL we've they'RE it's",
    "12345 3.14159 1e-9 ½ ², ٣",
    "İstanbul ß ǅ ΣΑΣ",
    "mojibake: cafÃ© â€œquotedâ€\x9d",
    "Hello World!! What?! snake_case_word ...",
    "\u200bzero\u200dwidth\ufeffmarks",
    "[CLS] [SEP] [MASK] [PAD] <pad> <mask>",
]


def random_texts(count: int, seed: int) -> list[str]:
    """`count` strings of 0-60 characters from an alphabet rich in what tokenizers trip on."""
    rng = random.Random(seed)
    alphabet = [chr(code) for code in range(32, 0x250)]
    alphabet += list("\t\n\r\u00a0\u2003\u200b 😀中文日本語한ﬁﬂ“”‘’&;#<>|_'!?.,") + [
        "&amp;", "&lt;", "&#39;", "<|endoftext|>", "<end_of_text>", "'s", "'LL", "  "]
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(count)]


@pytest.fixture(scope="session")
def open_clip_simple_tokenizer():
    return open_clip().tokenizer.SimpleTokenizer()


@pytest.fixture(scope="session")
def clip_vocab_dir(tmp_path_factory, open_clip_simple_tokenizer):
    renamed = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {renamed.get(token, token): index for token, index in open_clip_simple_tokenizer.encoder.items()}
    merges = sorted(open_clip_simple_tokenizer.bpe_ranks, key=open_clip_simple_tokenizer.bpe_ranks.get)
    directory = tmp_path_factory.mktemp("clip_vocab")
    (directory / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (directory / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                          encoding="utf-8")
    return directory


WORDPIECE_CORPUS = ["a photo of a dog", "the cat sat on the mat", "hello world snake case",
                    "a picture of two birds", "an ankle boot and a sneaker"] * 5


@pytest.fixture(scope="session")
def wordpiece_dirs(tmp_path_factory):
    """{"fast": PreTrainedTokenizerFast dir, "bert": BertTokenizer dir} over one WordPiece vocabulary."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    library = transformers()
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend.train_from_iterator(WORDPIECE_CORPUS, trainers.WordPieceTrainer(vocab_size=160, special_tokens=specials))
    cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    root = tmp_path_factory.mktemp("wordpiece")
    library.PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]",
                                    cls_token="[CLS]", sep_token="[SEP]",
                                    mask_token="[MASK]").save_pretrained(root / "fast")
    vocab = backend.get_vocab()
    (root / "vocab.txt").write_text("".join(f"{token}\n" for token in sorted(vocab, key=vocab.get)))
    library.BertTokenizer(str(root / "vocab.txt")).save_pretrained(root / "bert")
    return {"fast": root / "fast", "bert": root / "bert"}


# SigLIP's and SigLIP2's tokenizers, small: a SentencePiece unigram model trained on captions, as
# spiece.model (Google's Hugging Face SigLIP repositories) and as a T5-like tokenizer.json (open_clip's
# timm/ViT-*-SigLIP repositories); a byte-fallback BPE as a Gemma-like tokenizer.json (SigLIP2).
SPIECE_CORPUS = [f"{template} {name}" for template in ("a photo of a", "a picture of the", "A close-up photo of",
                                                        "an image showing two", "the cat sat next to the")
                 for name in ("dog", "cat", "sneaker", "ankle boot", "T-shirt", "snow", "bird", "river", "tree")]
SPIECE_CORPUS += ADVERSARIAL_TEXTS
# Texts with the special tokens of these tokenizers, and with their "▁" (SentencePiece's space).
SPECIAL_TEXTS = ["</s>", "a </s> b", "x<unk>y", " ▁▁ a ▁b", "HELLO </s>  World", "the " * 62 + "</s>",
                 "<eos> <bos> <pad> x", "<0x41> <mask>", "<extra_id_0> hi <extra_id_99>", "  lead", "trail  "]


@pytest.fixture(scope="session")
def spiece_model(tmp_path_factory):
    """spiece.model: unigram, T5's ids (pad 0, eos 1, unk 2, no bos), 200 pieces."""
    import io

    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SPIECE_CORPUS * 3), model_writer=model, model_type="unigram", vocab_size=200,
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    path = tmp_path_factory.mktemp("spiece") / "spiece.model"
    path.write_bytes(model.getvalue())
    return path


def write_tokenizer_dir(directory, backend, tokenizer_config: dict, model_type: str | None = None):
    """tokenizer.json (backend) and tokenizer_config.json; a config.json naming `model_type` if given."""
    directory.mkdir(parents=True, exist_ok=True)
    backend.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    if model_type is not None:
        (directory / "config.json").write_text(json.dumps({"model_type": model_type}))
    return directory


def t5_backend(spiece_path):
    """The pipeline transformers 4 wrote into T5's tokenizer.json (SentencePiece's character map and a
    run-of-spaces rule, Metaspace words, `$A </s>`), over the unigram model of `spiece_path`."""
    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    processor = sentencepiece.SentencePieceProcessor(model_file=str(spiece_path))
    proto = sentencepiece_model_pb2.ModelProto.FromString(processor.serialized_model_proto())
    vocab = [(processor.id_to_piece(index), processor.get_score(index)) for index in range(processor.get_piece_size())]
    backend = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    backend.normalizer = normalizers.Sequence([normalizers.Precompiled(proto.normalizer_spec.precompiled_charsmap),
                                               normalizers.Replace(Regex(" {2,}"), " ")])
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                           special_tokens=[("</s>", 1)])
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False)
                                for token in ("<pad>", "</s>", "<unk>")])
    return backend


GEMMA_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]


def gemma_backend(eos_only: bool):
    """Gemma's pipeline (" " -> "▁", byte-fallback BPE with `<0xNN>` pieces, no pre-splitting) over a
    BPE trained on the captions; post-processor `<bos> $A` (Gemma's) or, eos_only, `$A <eos>`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    trainer = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer.normalizer = normalizers.Replace(" ", "▁")
    trainer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    trainer.train_from_iterator(SPIECE_CORPUS * 3, trainers.BpeTrainer(vocab_size=300, special_tokens=GEMMA_SPECIALS,
                                                                       show_progress=False))
    values = json.loads(trainer.to_str())
    vocab = values["model"]["vocab"]
    for byte in range(256):
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    values["model"].update(byte_fallback=True, fuse_unk=True)
    backend = Tokenizer.from_str(json.dumps(values))
    backend.normalizer = normalizers.Replace(" ", "▁")
    backend.pre_tokenizer = pre_tokenizers.Split(" ", "merged_with_previous")
    backend.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    backend.post_processor = (
        processors.TemplateProcessing(single="$A <eos>", pair="$A <eos> $B <eos>", special_tokens=[("<eos>", 1)])
        if eos_only else
        processors.TemplateProcessing(single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", 2)]))
    return backend


GEMMA_TOKENS = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "unk_token": "<unk>",
                "mask_token": "<mask>"}


@pytest.fixture(scope="session")
def siglip_tokenizer_dirs(tmp_path_factory, spiece_model):
    """Tokenizer directories as SigLIP and SigLIP2 checkpoints hold them:

    "spiece": Google's HF SigLIP (spiece.model, tokenizer_config.json with added_tokens_decoder);
    "t5": open_clip's timm SigLIP (T5 tokenizer.json, tokenizer_class T5Tokenizer, pad </s>, no sentinels);
    "t5_sentinels": the same with T5Tokenizer's default 100 sentinels;
    "gemma": SigLIP2-like Gemma files (eos appended, right padding);
    "gemma_defaults": Gemma's own defaults (bos first, no padding side named: GemmaTokenizer pads left);
    "siglip2_model": the Gemma defaults in a directory whose config.json says model_type "siglip2".
    """
    import shutil

    root = tmp_path_factory.mktemp("siglip_tokenizers")
    spiece = root / "spiece"
    spiece.mkdir()
    shutil.copy(spiece_model, spiece / "spiece.model")
    entry = {"lstrip": True, "normalized": False, "rstrip": True, "single_word": False, "special": True}
    (spiece / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "SiglipTokenizer", "model_max_length": 64, "do_lower_case": True,
        "added_tokens_decoder": {"1": {"content": "</s>", **entry}, "2": {"content": "<unk>", **entry}},
        "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>", "additional_special_tokens": []}))
    t5_config = {"tokenizer_class": "T5Tokenizer", "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>",
                 "model_max_length": 64}
    gemma = {"tokenizer_class": "GemmaTokenizer", "model_max_length": 64, **GEMMA_TOKENS}
    return {
        "spiece": spiece,
        "t5": write_tokenizer_dir(root / "t5", t5_backend(spiece_model),
                                  {**t5_config, "extra_ids": 0, "additional_special_tokens": []}),
        "t5_sentinels": write_tokenizer_dir(root / "t5_sentinels", t5_backend(spiece_model), t5_config),
        "gemma": write_tokenizer_dir(root / "gemma", gemma_backend(eos_only=True),
                                     {**gemma, "add_bos_token": False, "add_eos_token": True, "padding_side": "right"}),
        "gemma_defaults": write_tokenizer_dir(root / "gemma_defaults", gemma_backend(eos_only=False), gemma),
        "siglip2_model": write_tokenizer_dir(root / "siglip2_model", gemma_backend(eos_only=False), gemma,
                                             model_type="siglip2"),
    }
