"""The run's tokenizer: trained once on the main process, loaded by every rank; its failure is every rank's."""

import time
from pathlib import Path

import pytest

from cliplab.data import DataConfig
from cliplab.distributed.launch import run_on_workers
from cliplab.errors import UserError
from cliplab.models.config import TextConfig
from cliplab.train.config import ConfigError, ModelSetupConfig
from cliplab.train.tokenizer_setup import build_run_tokenizer

from data_fixtures import make_manifest

TEXT = TextConfig(context_length=12, vocab_size=300, width=16, layers=1, heads=2)


def _csv(manifest, caption_key="title"):
    return DataConfig(dataset_type="csv", train_data=str(manifest), csv_caption_key=caption_key)


def test_a_tokenizer_is_trained_on_the_captions_and_checked_against_the_text_tower(tmp_path):
    manifest = make_manifest(tmp_path / "data", 8)
    tokenizer = build_run_tokenizer(ModelSetupConfig(), _csv(manifest), TEXT, resume_from=None, run_dir=tmp_path)
    assert (tmp_path / "tokenizer.json").is_file()
    assert tokenizer(["caption 3"]).shape == (1, TEXT.context_length)
    again = build_run_tokenizer(ModelSetupConfig(tokenizer=str(tmp_path / "tokenizer.json")), _csv(manifest), TEXT,
                                resume_from=None, run_dir=tmp_path / "elsewhere")
    assert again(["caption 3"]).tolist() == tokenizer(["caption 3"]).tolist()
    longer = TextConfig(context_length=16, vocab_size=300, width=16, layers=1, heads=2)
    with pytest.raises(ConfigError, match="makes sequences of 12 tokens, the text tower expects context_length 16"):
        build_run_tokenizer(ModelSetupConfig(tokenizer=str(tmp_path / "tokenizer.json")), _csv(manifest), longer,
                            resume_from=None, run_dir=tmp_path)


def _tokenizer_on_ranks(rank, world_size, manifest, run_dirs):
    outcomes = []
    for caption_key, run_dir in zip(("title", "caption"), run_dirs):
        try:
            tokenizer = build_run_tokenizer(ModelSetupConfig(), _csv(manifest, caption_key), TEXT, resume_from=None,
                                            run_dir=Path(run_dir))
            outcomes.append(tokenizer(["caption 5"]).tolist())
        except UserError as error:  # the same type and message on every rank, rebuilt from rank 0's
            outcomes.append((type(error).__name__, str(error)))
    return outcomes


def test_every_rank_loads_rank_0s_tokenizer_or_raises_its_error(tmp_path):
    """Before, rank 0 raised alone and rank 1 waited at a barrier until the process-group timeout."""
    manifest = make_manifest(tmp_path / "data", 8)
    run_dirs = [str(tmp_path / "ok"), str(tmp_path / "fails")]
    for run_dir in run_dirs:
        (tmp_path / run_dir).mkdir()
    start = time.monotonic()
    rank0, rank1 = run_on_workers(_tokenizer_on_ranks, 2, str(manifest), run_dirs, timeout_s=60)
    assert time.monotonic() - start < 60
    assert rank0 == rank1
    assert rank0[1][0] == "UserError"
    assert rank0[1][1].startswith("config key 'data.csv_caption_key' (--csv-caption-key) names 'caption', which is "
                                  "not a column of ")
