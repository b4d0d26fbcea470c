"""Tokenizer throughput on 10,000 captions: cliplab's tokenizers beside the libraries they match.

Run from the repository root: `python benchmarks/tokenizer_speed.py [--captions 10000]`. Writes section
`tokenizers` of BENCHMARKS.md. Pairs, each measured in this one process on the same captions:
cliplab's OpenAI BPE vs open_clip's SimpleTokenizer (both run ftfy on every caption), cliplab's
reader of a CLIP tokenizer directory vs transformers' CLIPTokenizer, and cliplab's trained BPE.
Every tokenizer starts cold (a fresh instance: empty word caches) and tokenizes batches of 256.
The ids of each pair are checked equal before timing is reported.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import torch  # noqa: E402

from benchmarks.report import format_table, write_section  # noqa: E402
from cliplab.data.fashion_mnist import fashion_mnist_caption_corpus  # noqa: E402
from cliplab.data.tokenizer import Tokenizer  # noqa: E402
from cliplab.data.tokenizer_files import write_hf_tokenizer_files  # noqa: E402
from cliplab.data.tokenizer_hf import hf_tokenizer_from_dir  # noqa: E402
from cliplab.data.tokenizer_openai import openai_bpe_tokenizer  # noqa: E402
from reference_libraries import open_clip, transformers  # noqa: E402

BATCH_SIZE = 256


def captions(count: int, seed: int = 0) -> list[str]:
    """Distinct captions: a built-in caption with a few random words of the corpus appended."""
    corpus = fashion_mnist_caption_corpus()
    words = sorted({word for caption in corpus for word in caption.split()})
    rng = random.Random(seed)
    return [f"{rng.choice(corpus)}, {' '.join(rng.choices(words, k=rng.randint(1, 8)))}"
            for _ in range(count)]


def tokenize_all(tokenize, texts: list[str]) -> tuple[torch.Tensor, float]:
    start = time.perf_counter()
    batches = [tokenize(texts[index:index + BATCH_SIZE]) for index in range(0, len(texts), BATCH_SIZE)]
    return torch.cat(batches), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=10_000)
    args = parser.parse_args()
    torch.set_num_threads(2)
    texts = captions(args.captions)
    library = open_clip()
    rows = []

    def pair(name, ours, reference_name, reference):
        our_ids, our_seconds = tokenize_all(ours, texts)
        reference_ids, reference_seconds = tokenize_all(reference, texts)
        if not torch.equal(our_ids, reference_ids):
            raise SystemExit(f"{name}: ids differ from {reference_name}")
        rows.append([name, f"{our_seconds:.2f}", f"{len(texts) / our_seconds:,.0f}"])
        rows.append([reference_name, f"{reference_seconds:.2f}", f"{len(texts) / reference_seconds:,.0f}"])

    pair("cliplab OpenAI BPE", openai_bpe_tokenizer(), "open_clip SimpleTokenizer",
         library.tokenizer.SimpleTokenizer())
    with tempfile.TemporaryDirectory() as directory:
        write_hf_tokenizer_files(openai_bpe_tokenizer(), directory)
        reference = transformers().CLIPTokenizer.from_pretrained(directory)
        pair("cliplab HF CLIP directory", hf_tokenizer_from_dir(directory),
             "transformers CLIPTokenizer",
             lambda batch: reference(batch, padding="max_length", max_length=77, truncation=True,
                                     return_tensors="pt").input_ids)
    trained = Tokenizer.train(fashion_mnist_caption_corpus(), vocab_size=2048, context_length=77)
    _, trained_seconds = tokenize_all(trained, texts)
    rows.append(["cliplab trained BPE (2048 ids)", f"{trained_seconds:.2f}",
                 f"{len(texts) / trained_seconds:,.0f}"])
    table = format_table(["tokenizer", f"s for {len(texts):,} captions", "captions / s"], rows)
    print(table)
    body = (f"{len(texts):,} distinct captions (a built-in Fashion-MNIST caption plus 1-8 random words), "
            f"batches of {BATCH_SIZE}, context 77, each tokenizer a fresh instance; ids of each pair checked "
            f"equal. The OpenAI BPE rows include ftfy on every caption.\n\n{table}")
    write_section("tokenizers", "Tokenizer throughput", body)


if __name__ == "__main__":
    main()
