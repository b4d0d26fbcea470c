"""Training on corrupt data (RELIABILITY item 7): bad samples are skipped and counted exactly, a
mostly-bad dataset stops the run naming files, and a failure on one rank stops every rank promptly.

The data is a CSV manifest of 8x8 PNGs (`data_fixtures.make_manifest`), so none of this needs the
Fashion-MNIST files.
"""

import json
import re

import pytest

from cliplab.data.batching import REPLACEMENTS_PER_SLOT
from cliplab.data.sampler import ResumableDistributedBatchSampler
from cliplab.data.samples import TooManyBadSamplesError
from cliplab.distributed.launch import run_on_workers
from cliplab.train import TrainHooks, train

from data_fixtures import damage_row_group, make_manifest, make_parquet
from train_helpers import csv_config


def records(run_dir, kind):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if record["kind"] == kind]


def test_one_percent_bad_completes_and_counts_each_bad_sample_once(tmp_path):
    bad = {7: "truncated", 150: "missing", 299: "empty-caption"}  # 3 of 300
    manifest = make_manifest(tmp_path / "data", 300, bad=bad)
    result = train(csv_config(tmp_path, manifest))
    # One epoch draws each of the 300 rows once (25 batches of 12); a bad row is replaced by a row
    # drawn by hash, and with this seed no replacement lands on a bad row (one that did would be a
    # fourth bad draw, counted as such).
    assert result.summary["steps"] == 25
    assert result.summary["skipped_samples"] == 3
    assert json.loads((result.run_dir / "summary.json").read_text())["skipped_samples"] == 3
    assert records(result.run_dir, "train")[-1]["skipped_samples"] == 3
    [epoch] = records(result.run_dir, "data")
    assert (epoch["epoch"], epoch["skipped_samples"], epoch["samples_drawn"]) == (0, 3, 303)
    named = sorted(re.search(r"images/(\d+\.png): ([a-z][a-z ]*[a-z])", example).groups()
                   for example in epoch["skipped_examples"])
    assert named == [("150.png", "image file does not exist"), ("299.png", "empty caption"),
                     ("7.png", "cannot decode image")]


def test_a_parquet_row_group_that_cannot_be_read_is_skipped_and_counted_and_training_goes_on(tmp_path):
    # Before: OSError "Couldn't deserialize thrift" at start-up (the tokenizer's caption corpus) and
    # in the loader, a 91-line traceback.
    data = damage_row_group(make_parquet(tmp_path / "data.parquet", 96, row_group_size=8), 3)
    config = csv_config(tmp_path, data, batch_size=12, max_skip_fraction=0.2)
    config.data.dataset_type = "parquet"
    result = train(config)
    assert result.summary["steps"] == 8 and result.summary["skipped_samples"] == 8  # rows 24-31, each once
    [epoch] = records(result.run_dir, "data")
    assert (epoch["skipped_samples"], epoch["samples_drawn"]) == (8, 104)
    assert all(re.fullmatch(rf"{re.escape(str(data))}:row (2[4-9]|3[01]): row group 3 of the file cannot be read "
                            r"\(Couldn't deserialize thrift.*\)", example) for example in epoch["skipped_examples"])


def test_all_bad_fails_within_k_errors_naming_files(tmp_path):
    kinds = ["truncated", "missing", "garbage", "empty-caption"]
    manifest = make_manifest(tmp_path / "data", 40, bad={i: kinds[i % 4] for i in range(40)})
    batch_size = 8
    with pytest.raises(TooManyBadSamplesError) as raised:
        train(csv_config(tmp_path, manifest, batch_size=batch_size))
    message = str(raised.value)
    errors = int(re.match(r"(\d+) of the samples drawn for one batch of 8 were bad", message).group(1))
    assert errors == REPLACEMENTS_PER_SLOT * batch_size + 1  # K = 4 x batch_size + 1 bad draws
    assert re.search(r"images/\d+\.png: (cannot decode image|image file does not exist|empty caption)",
                     message)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_bad_fraction_over_threshold_stops_the_run_naming_files(tmp_path):
    manifest = make_manifest(tmp_path / "data", 100, bad={i: "missing" for i in range(0, 100, 10)})
    config = csv_config(tmp_path, manifest, batch_size=10, max_skip_fraction=0.05,
                        skip_check_min_samples=40)
    with pytest.raises(TooManyBadSamplesError, match=r"(?s)max_skip_fraction 5\.0%.*examples:.*"
                       r"images/\d+0\.png: image file does not exist"):
        train(config)


class Crash(Exception):
    """Stands in for a kill: raised by a hook on every rank at the same step."""


def test_skip_counts_of_a_resumed_run_equal_an_uninterrupted_run(tmp_path):
    # 6 bad of 48: nearly every step skips one. Metrics are logged at the end only, checkpoints
    # every 3 steps: the counts must travel in the checkpoint, not in the log.
    manifest = make_manifest(tmp_path / "data", 48, bad={i: "garbage" for i in range(3, 48, 8)})

    def config(name):
        config = csv_config(tmp_path, manifest, name=name, batch_size=8, epochs=2,
                            max_skip_fraction=0.5)
        config.checkpoint.save_every_steps = 3
        config.logging.log_every_n_steps = 100
        return config

    reference = train(config("reference"))

    def crash_at_11(step, model):
        if step == 11:
            raise Crash
    with pytest.raises(Crash):
        train(config("resumed"), hooks=TrainHooks(after_step=crash_at_11))
    resumed_config = config("resumed")
    resumed_config.checkpoint.resume = "latest"  # step 9: epoch 1, batch 3 of 6
    resumed = train(resumed_config)

    assert reference.summary["steps"] == resumed.summary["steps"] == 12
    assert reference.summary["skipped_samples"] >= 12
    assert resumed.summary["skipped_samples"] == reference.summary["skipped_samples"]
    counts = [[(r["epoch"], r["skipped_samples"], r["samples_drawn"]) for r in records(run.run_dir, "data")]
              for run in (reference, resumed)]
    assert counts[0] == counts[1] and [epoch for epoch, _, _ in counts[0]] == [0, 1]
    assert sum(skipped for _, skipped, _ in counts[0]) == reference.summary["skipped_samples"]


def _train_catching(rank, world_size, config):
    """(exception type name, message) of this rank's train(config); (None, None) if it finished."""
    try:
        train(config)
    except Exception as error:  # noqa: BLE001 - the test compares what every rank raised
        return type(error).__name__, str(error)
    return None, None


def test_bad_data_on_one_rank_stops_every_rank_promptly(tmp_path):
    """Only rank 1's samples are bad. Rank 1 used to raise alone while rank 0 waited in its next
    collective for the gloo timeout (120 s here; 1800 s by default): now every rank raises at once.
    A rank left waiting would fail with the collective's timeout instead, so equal errors show it
    (wall time is not asserted: a busy machine takes minutes just to start the processes)."""
    count, batch_size = 64, 4
    sampler = ResumableDistributedBatchSampler(dataset_size=count, batch_size=batch_size, rank=1,
                                               world_size=2, seed=0, epoch=0)
    rank1_rows = [index for batch in sampler for index in batch]
    manifest = make_manifest(tmp_path / "data", count, bad={index: "truncated" for index in rank1_rows})
    config = csv_config(tmp_path, manifest, batch_size=batch_size, skip_check_min_samples=8)
    assert config.loop.seed == 0  # the seed the sampler above used

    (kind0, message0), (kind1, message1) = run_on_workers(_train_catching, 2, config, timeout_s=600)
    assert kind0 == kind1 == "TooManyBadSamplesError"
    assert re.search(r"max_skip_fraction 5\.0%.*examples:", message1, re.S)
    assert re.search(r"images/\d+\.png: cannot decode image", message1)
    assert message0 == message1  # rank 0 reports rank 1's real cause


def test_unreadable_evaluation_data_on_rank_0_stops_every_rank_at_start_up(tmp_path):
    """The evaluation data is opened on rank 0 only, at start-up (a validation manifest without the
    caption column here); its failure must reach rank 1 too, which would otherwise wait at the next
    collective until the timeout, and it comes before the first step, not after training."""
    manifest = make_manifest(tmp_path / "data", 64)
    val_manifest = tmp_path / "data" / "val.tsv"
    val_manifest.write_text("filepath\tlabel\nimages/0.png\t0\n")
    config = csv_config(tmp_path, manifest, batch_size=4)
    config.loop.max_steps = 2
    config.data.val_data = str(val_manifest)
    config.eval.eval_at_end = True

    (kind0, message0), (kind1, message1) = run_on_workers(_train_catching, 2, config, timeout_s=600)
    # Rank 1 reports rank 0's real cause, not a secondary "rank 0 failed" nor a collective's timeout.
    assert (kind0, message0) == (kind1, message1)
    assert kind0 == "UserError" and message0.startswith(f"--val-data {val_manifest} (data.val_data, read by the "
                                                        f"evaluation): manifest {val_manifest} has no column 'title'")
    assert not (tmp_path / "run").exists()  # not one step trained; the failed start left no directory
