import pytest
import torch

from cliplab.data.samples import TooManyBadSamplesError
from cliplab.data.skipping import (AccountedLoader, SkipStats, check_skip_threshold, epoch_skip_record,
                                   step_sample_counts)
from cliplab.distributed.launch import run_on_workers


def batch(kept, skipped):
    return {"sample_ids": torch.arange(kept), "skipped": skipped,
            "skipped_examples": [f"bad{i}" for i in range(skipped)]}


def test_stats_accumulate():
    stats = SkipStats()
    stats.add_batch(batch(4, 1))
    stats.add_batch(batch(4, 0))
    assert (stats.samples_drawn, stats.samples_skipped) == (9, 1)
    assert stats.skip_fraction == pytest.approx(1 / 9)
    assert stats.examples == ["bad0"]


def test_threshold_waits_for_min_samples():
    stats = SkipStats(samples_drawn=9, samples_skipped=9, examples=["x.png: broken"])
    check_skip_threshold(stats, max_skip_fraction=0.1, min_samples=10)
    stats.samples_drawn = 10
    with pytest.raises(TooManyBadSamplesError, match=r"9 of 10 samples .* \(90.0% > "
                       r"max_skip_fraction 10.0%\); examples:\n  x.png: broken"):
        check_skip_threshold(stats, max_skip_fraction=0.1, min_samples=10)


def test_accounted_loader_drops_empty_batches_and_stops_on_threshold():
    loader = AccountedLoader([batch(2, 0), batch(0, 1), batch(2, 0)], num_batches=3,
                             max_skip_fraction=0.5, min_samples=1, what="test data")
    assert [len(b["sample_ids"]) for b in loader] == [2, 2]
    assert loader.stats.samples_skipped == 1 and len(loader) == 3
    failing = AccountedLoader([batch(1, 3), batch(4, 0)], num_batches=2, max_skip_fraction=0.5,
                              min_samples=4, what="test data")
    with pytest.raises(TooManyBadSamplesError, match="test data"):
        list(failing)


def test_step_counts_and_the_epoch_record_in_one_process():
    assert step_sample_counts([batch(4, 2), batch(4, 0)], None) == (2, 10)
    record = epoch_skip_record(skipped=3, drawn=20, local_examples=["a.png: broken"])
    assert record == {"skipped_samples": 3, "samples_drawn": 20, "skip_fraction": 0.15,
                      "skipped_examples": ["a.png: broken"]}
    assert epoch_skip_record(skipped=0, drawn=0, local_examples=[])["skip_fraction"] == 0.0
    error = TooManyBadSamplesError("too many")
    with pytest.raises(TooManyBadSamplesError) as raised:
        step_sample_counts([batch(1, 3)], error)
    assert raised.value is error


def _counts_on_ranks(rank, world_size):
    counts = step_sample_counts([batch(4, rank + 1)], None)
    record = epoch_skip_record(skipped=counts[0], drawn=counts[1], local_examples=[f"rank{rank}.png: broken"])
    outcomes = []
    for error in (TooManyBadSamplesError("12 of 20 samples were bad"), OSError("disk gone")):
        try:
            step_sample_counts([batch(4, 0)], error if rank == 1 else None)
            outcomes.append(None)
        except Exception as raised:  # noqa: BLE001 - compared below
            outcomes.append((type(raised).__name__, str(raised)))
    return counts, record, outcomes


def test_ranks_sum_their_counts_and_all_stop_with_the_real_cause_when_one_fails():
    rank0, rank1 = run_on_workers(_counts_on_ranks, 2, timeout_s=60)
    assert rank0[:2] == rank1[:2]
    assert rank0[0] == (3, 11)  # 1 + 2 skipped, 2 x 4 kept
    assert rank0[1]["skipped_examples"] == ["rank0.png: broken", "rank1.png: broken"]
    # Rank 1's read failed; rank 0 stops with the same error, not a secondary one.
    assert rank0[2] == rank1[2] == [("TooManyBadSamplesError", "12 of 20 samples were bad"), ("OSError", "disk gone")]
