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
