"""The captions a run without a given tokenizer trains its tokenizer on: those of its training data.

`caption_corpus(config)` reads them through the source `config.dataset_type` names
(`cliplab.data.sources`, each entry's `captions`): Fashion-MNIST's built-in corpus (every generated
caption and every zero-shot prompt), a manifest's caption column, the `.txt` members (or the
`wds_caption_key` of the `.json` ones) of webdataset shards, a parquet caption column. A field
holding several captions gives each of them (`caption_lists`); a `::`-joined mixture of sources
gives them source after source.

At most MAX_CORPUS_CAPTIONS non-empty captions are read, the first ones in file order: enough to
fit a BPE vocabulary of a few thousand tokens, and it bounds the time spent before the first step.
"""

from __future__ import annotations

import itertools

from cliplab.data.config import DataConfig
from cliplab.data.sources import data_source
from cliplab.errors import UserError

MAX_CORPUS_CAPTIONS = 100_000


def caption_corpus(config: DataConfig) -> list[str]:
    """Texts to train the run's tokenizer on: the captions of `config`'s training data.

    Raises UserError when the training data is not set, a caption column is missing, or the data
    holds no caption at all.
    """
    source = data_source(config.dataset_type)
    if config.train_data is None and not source.built_in:
        raise UserError(f"config key 'data.train_data' (--train-data) must be set for dataset_type "
                        f"{config.dataset_type!r}: the tokenizer is trained on the training captions")
    corpus = list(itertools.islice(source.captions(config), MAX_CORPUS_CAPTIONS))
    if not corpus:
        raise UserError(f"{config.dataset_type} data {config.train_data!r} holds no caption to train "
                        "a tokenizer on (or pass one with --tokenizer)")
    return corpus
