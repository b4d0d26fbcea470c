"""The captions a run without a given tokenizer trains its tokenizer on: those of its training data.

`caption_corpus(config)` reads them from whatever `config.dataset_type` names:

- fashion-mnist: the built-in corpus (every generated caption and every zero-shot prompt);
- csv: the manifest's caption column (`csv_caption_key`);
- webdataset: the `.txt` members of the shards, in shard order (only the tar headers and the
  captions are read from local shards; remote ones are streamed);
- parquet: the caption column (`parquet_caption_key` or its default), one row group at a time.

A field holding several captions gives each of them (`caption_lists`); a `::`-joined mixture of
sources reads them source after source. For the last three, at most MAX_CORPUS_CAPTIONS non-empty
captions are read, the first ones in file order: enough to fit a BPE vocabulary of a few thousand
tokens, and it bounds the time spent
before the first step.
"""

from __future__ import annotations

import itertools
import json
import tarfile
from pathlib import Path
from typing import Iterator

from cliplab.data.caption_lists import corpus_captions
from cliplab.data.config import DataConfig
from cliplab.data.csv_dataset import open_manifest
from cliplab.data.mixture_syntax import split_sources
from cliplab.errors import InvalidInputError, MissingInputError, UserError

MAX_CORPUS_CAPTIONS = 100_000


def caption_corpus(config: DataConfig) -> list[str]:
    """Texts to train the run's tokenizer on: the captions of `config`'s training data.

    Raises UserError when the training data is not set, a caption column is missing, or the data
    holds no caption at all.
    """
    if config.dataset_type == "fashion-mnist":
        from cliplab.data.fashion_mnist import fashion_mnist_caption_corpus

        return fashion_mnist_caption_corpus()
    if config.train_data is None:
        raise UserError(f"config key 'data.train_data' (--train-data) must be set for dataset_type "
                        f"{config.dataset_type!r}: the tokenizer is trained on the training captions")
    if config.dataset_type == "csv":
        captions = itertools.chain.from_iterable(_csv_captions(config, manifest)
                                                 for manifest in split_sources(config.train_data))
    elif config.dataset_type == "webdataset":
        captions = _shard_captions(config.train_data, config.wds_caption_key)
    else:
        from cliplab.data.parquet_dataset import parquet_captions

        captions = itertools.chain.from_iterable(
            parquet_captions(location, caption_key=config.parquet_caption_key, image_key=config.parquet_image_key)
            for location in split_sources(config.train_data))
    corpus = list(itertools.islice(captions, MAX_CORPUS_CAPTIONS))
    if not corpus:
        raise UserError(f"{config.dataset_type} data {config.train_data!r} holds no caption to train "
                        "a tokenizer on (or pass one with --tokenizer)")
    return corpus


def _csv_captions(config: DataConfig, location: str) -> Iterator[str]:
    manifest = Path(location)
    try:
        with open_manifest(manifest, config.csv_separator) as rows:
            if config.csv_caption_key not in rows.columns:
                raise UserError(f"config key 'data.csv_caption_key' (--csv-caption-key) names "
                                f"{config.csv_caption_key!r}, which is not a column of {manifest} "
                                f"(columns: {rows.columns}, separator {config.csv_separator!r})")
            for _, row in rows:
                yield from corpus_captions(row[config.csv_caption_key] or "")
    except (InvalidInputError, MissingInputError) as error:
        raise UserError(f"config key 'data.train_data' (--train-data): {error}") from None


def _shard_captions(pattern: str, caption_key: str | None) -> Iterator[str]:
    """The captions of the shards of `pattern` (`.txt` members, or the `caption_key` of `.json` ones),
    shard by shard; an unreadable shard is passed over (training counts it as a skipped item)."""
    import webdataset as wds

    from cliplab.data.webdataset_source import expand_shard_urls

    for url in expand_shard_urls(pattern):
        local = "://" not in url and not url.startswith("pipe:")
        try:
            with (tarfile.open(url) if local else
                  tarfile.open(fileobj=wds.gopen(url), mode="r|*")) as shard:
                for member in shard:
                    # webdataset's convention: the extension is what follows the first dot
                    extension = member.name.rsplit("/", 1)[-1].partition(".")[2]
                    if member.isfile() and extension == ("txt" if caption_key is None else "json"):
                        text = shard.extractfile(member).read().decode("utf-8", errors="replace")
                        yield from corpus_captions(text if caption_key is None else _json_field(text, caption_key))
        except (tarfile.TarError, OSError):
            continue


def _json_field(text: str, key: str):
    """`key` of the JSON object `text` (None when it is not one or has no such key)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value.get(key) if isinstance(value, dict) else None
