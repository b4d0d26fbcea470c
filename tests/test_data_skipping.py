import pytest
import torch

from cliplab.data.samples import TooManyBadSamplesError
from cliplab.data.skipping import AccountedLoader, SkipStats, check_skip_threshold


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
