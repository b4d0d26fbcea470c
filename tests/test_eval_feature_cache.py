"""The linear probe's feature cache: round trip, keys that change with the checkpoint and the split,
and files it cannot use read as absent."""

import os

import torch

from benchmark_fixtures import write_image_folder
from cliplab.data.benchmark import open_benchmark_dataset
from cliplab.eval.feature_cache import FeatureCache, checkpoint_fingerprint
from cliplab.eval.linear_probe import Features


def test_round_trip_and_keys(tmp_path):
    write_image_folder(tmp_path / "set", {"train": 6, "test": 4})
    dataset = open_benchmark_dataset(str(tmp_path / "set"))
    train = dataset.split("train")
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"weights")
    cache = FeatureCache(tmp_path / "cache", {"checkpoint": checkpoint_fingerprint(checkpoint)})
    assert cache.load(dataset, train) is None
    features = Features(torch.randn(6, 5), torch.tensor(train.labels))
    cache.save(dataset, train, features)
    loaded = cache.load(dataset, train)
    assert torch.equal(loaded.features, features.features) and torch.equal(loaded.labels, features.labels)
    assert cache.directory(dataset, train) != cache.directory(dataset, dataset.split("test"))
    assert not list((tmp_path / "cache").rglob("*.part"))

    checkpoint.write_bytes(b"other weights")  # rewritten in place: another key
    os.utime(checkpoint, ns=(1, 1))
    assert FeatureCache(tmp_path / "cache", {"checkpoint": checkpoint_fingerprint(checkpoint)}).load(
        dataset, train) is None


def test_an_unreadable_or_stale_file_reads_as_absent(tmp_path):
    write_image_folder(tmp_path / "set", {"train": 6})
    dataset = open_benchmark_dataset(str(tmp_path / "set"))
    train = dataset.split("train")
    cache = FeatureCache(tmp_path / "cache", {"model": "m"})
    cache.save(dataset, train, Features(torch.randn(5, 3), torch.arange(5)))  # one row short
    assert cache.load(dataset, train) is None
    (cache.directory(dataset, train) / "train.safetensors").write_bytes(b"not safetensors")
    assert cache.load(dataset, train) is None
