"""The tokenizer a run uses: the resumed checkpoint's, a given file or directory, or one trained on
the captions (saved in the run directory with `cliplab.data.tokenizer_files.save_tokenizer`).

A tokenizer is trained on the main process only (`run_on_main`: its failure, a manifest without the
caption column for instance, stops every rank at once); every rank then loads the same file, so all
tokenize identically.
"""

from __future__ import annotations

from pathlib import Path

from cliplab.data import DataConfig
from cliplab.data.caption_corpus import caption_corpus
from cliplab.data.tokenizer import Tokenizer
from cliplab.data.tokenizer_base import TokenizerBase
from cliplab.data.tokenizer_files import load_tokenizer, save_tokenizer
from cliplab.distributed.agreement import run_on_main
from cliplab.models.config import TextConfig
from cliplab.train.config import ConfigError, ModelSetupConfig


def check_tokenizer_fits(tokenizer: TokenizerBase, text: TextConfig, source: str) -> None:
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


def _train_tokenizer(data: DataConfig, text: TextConfig, run_dir: Path) -> None:
    trained = Tokenizer.train(caption_corpus(data), vocab_size=text.vocab_size, context_length=text.context_length)
    save_tokenizer(trained, run_dir)


def _read_tokenizer(source: Path) -> TokenizerBase:
    """A tokenizer directory (any kind `save_tokenizer` writes) or a trained tokenizer.json file."""
    if source.is_dir():
        return load_tokenizer(source)
    if not source.is_file():
        raise ConfigError("model.tokenizer", str(source), "must be an existing tokenizer.json or tokenizer directory")
    return Tokenizer.from_file(source)


def build_run_tokenizer(setup: ModelSetupConfig, data: DataConfig, text: TextConfig, *,
                        resume_from: Path | None, run_dir: Path) -> TokenizerBase:
    """The run's tokenizer, checked against the text tower `text`. A collective when one is trained."""
    if resume_from is not None:
        source = Path(resume_from)
    elif setup.tokenizer is not None:
        source = Path(setup.tokenizer)
    else:
        source = Path(run_dir)
        run_on_main(lambda: _train_tokenizer(data, text, source))
    tokenizer = _read_tokenizer(source)
    check_tokenizer_fits(tokenizer, text, str(source))
    return tokenizer
