"""The run directory: the same path on every rank, and a refusal that every rank raises."""

import pytest

from cliplab.distributed.launch import run_on_workers
from cliplab.train.config import ConfigError
from cliplab.train.run_dir import prepare_run_dir

from train_helpers import small_config


def test_fresh_run_refuses_an_existing_run_directory(tmp_path):
    config = small_config(tmp_path, name="old")
    assert prepare_run_dir(config) == tmp_path / "old"
    (tmp_path / "old" / "metrics.jsonl").write_text("")
    with pytest.raises(ConfigError, match="'logging.name' names an existing run"):
        prepare_run_dir(config)
    config.checkpoint.resume = "latest"
    assert prepare_run_dir(config) == tmp_path / "old"


def _prepare_on_ranks(rank, world_size, logs):
    outcomes = []
    for name in (None, "existing"):
        try:
            outcomes.append(str(prepare_run_dir(small_config(logs, name=name))))
        except ConfigError as error:  # the same type on every rank: rebuilt from rank 0's
            outcomes.append(f"ConfigError: {error} (key {error.key})")
    return outcomes


def test_every_rank_gets_rank_0s_directory_or_its_refusal(tmp_path):
    (tmp_path / "existing" / "checkpoints").mkdir(parents=True)
    # Before the fix only rank 0 raised; rank 1 went on with a refused directory, into collectives
    # rank 0 never joins.
    rank0, rank1 = run_on_workers(_prepare_on_ranks, 2, str(tmp_path), timeout_s=60)
    assert rank0 == rank1
    assert rank0[0].startswith(str(tmp_path)) and "-model_tiny-" in rank0[0]  # rank 0's timestamped name
    assert rank0[1].startswith("ConfigError: config key 'logging.name' names an existing run")
    assert rank0[1].endswith("(key logging.name)")
