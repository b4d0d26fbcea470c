"""The tokenizer a run uses: the resumed checkpoint's, a given file, or one trained on the captions.

A tokenizer is trained on the main process only (`run_on_main`: its failure, a manifest without the
caption column for instance, stops every rank at once); every rank then loads the same file, so all
tokenize identically.
"""

from __future__ import annotations

from pathlib import Path

from cliplab.bundle import TOKENIZER_FILE
from cliplab.data import DataConfig
from cliplab.data.tokenizer import Tokenizer
from cliplab.distributed.agreement import run_on_main
from cliplab.models.config import TextConfig
from cliplab.train.config import ConfigError, ModelSetupConfig


def caption_corpus(data: DataConfig) -> list[str]:
    """Texts to train a tokenizer on: the built-in caption corpus, or a CSV manifest's captions."""
    if data.dataset_type == "fashion-mnist":
        from cliplab.data import fashion_mnist_caption_corpus

        return fashion_mnist_caption_corpus()
    if data.dataset_type == "csv" and data.train_data:
        import csv

        if not Path(data.train_data).is_file():
            raise ConfigError("data.train_data", data.train_data, "must be an existing CSV/TSV manifest")
        with open(data.train_data, newline="") as handle:
            reader = csv.DictReader(handle, delimiter=data.csv_separator)
            if data.csv_caption_key not in (reader.fieldnames or []):
                raise ConfigError("data.csv_caption_key", data.csv_caption_key,
                                  f"is not a column of {data.train_data} (columns: {reader.fieldnames})")
            return [row[data.csv_caption_key] for row in reader if row[data.csv_caption_key]]
    raise ConfigError("model.tokenizer", None, f"must name a tokenizer.json for dataset_type "
                      f"{data.dataset_type!r} (cliplab trains one only on fashion-mnist or csv captions)")


def check_tokenizer_fits(tokenizer: Tokenizer, text: TextConfig, source: str) -> None:
    """ConfigError naming `source` unless the tokenizer's ids, length and padding fit the text tower."""
    if tokenizer.vocab_size > text.vocab_size:
        raise ConfigError("model.tokenizer", source, f"has {tokenizer.vocab_size} tokens, more than the text "
                          f"tower's vocab_size {text.vocab_size}")
    if tokenizer.context_length != text.context_length:
        raise ConfigError("model.tokenizer", source, f"makes sequences of {tokenizer.context_length} tokens, the "
                          f"text tower expects context_length {text.context_length}")
    if tokenizer.pad_id != text.pad_id:
        raise ConfigError("model.tokenizer", source, f"pads with id {tokenizer.pad_id}, the text tower masks "
                          f"pad_id {text.pad_id}")


def _train_tokenizer(data: DataConfig, text: TextConfig, path: str) -> None:
    Tokenizer.train(caption_corpus(data), vocab_size=text.vocab_size, context_length=text.context_length).save(path)


def build_run_tokenizer(setup: ModelSetupConfig, data: DataConfig, text: TextConfig, *,
                        resume_from: Path | None, run_dir: Path) -> Tokenizer:
    """The run's tokenizer, checked against the text tower `text`. A collective when one is trained."""
    if resume_from is not None:
        source = str(resume_from / TOKENIZER_FILE)
    elif setup.tokenizer is not None:
        source = setup.tokenizer
    else:
        source = str(run_dir / TOKENIZER_FILE)
        run_on_main(lambda: _train_tokenizer(data, text, source))
    if not Path(source).is_file():
        raise ConfigError("model.tokenizer", source, "must be an existing tokenizer.json")
    tokenizer = Tokenizer.from_file(source)
    check_tokenizer_fits(tokenizer, text, source)
    return tokenizer
