import json
import tarfile
from io import BytesIO

import numpy as np
import pytest
from PIL import Image

from cliplab.data.csv_dataset import CsvDataset
from cliplab.data.fashion_mnist import FashionMnistDataset
from cliplab.data.webdataset_writer import dataset_records, write_shards
from data_fixtures import make_fashion_dir, make_manifest


def members(path):
    with tarfile.open(path) as tar:
        return {member.name: tar.extractfile(member).read() for member in tar.getmembers()}


def test_manifest_to_shards_keeps_original_bytes_and_skips_bad(tmp_path):
    dataset = CsvDataset(make_manifest(tmp_path / "set", 7, bad={2: "garbage"}), label_key="label")
    report = write_shards(dataset_records(dataset), out_dir=tmp_path / "out", prefix="train",
                          samples_per_shard=3)
    assert report.num_samples == 6 and report.skipped == 1
    assert "2.png: cannot decode" in report.skipped_examples[0]
    assert report.pattern == str(tmp_path / "out" / "train-{000000..000001}.tar")
    first = members(report.shard_paths[0])
    assert sorted(first) == [f"00000000{i}.{ext}" for i in (0, 1, 3) for ext in ("json", "png",
                                                                                  "txt")]
    assert first["000000003.png"] == (tmp_path / "set" / "images" / "3.png").read_bytes()
    assert first["000000003.txt"] == b"caption 3"
    assert json.loads(first["000000003.json"])["sample_id"] == 3
    assert json.loads(first["000000003.json"])["label"] == 3
    info = json.loads((tmp_path / "out" / "train-info.json").read_text())
    assert info["num_samples"] == 6 and info["skipped"] == 1
    assert not list((tmp_path / "out").glob("*.part"))


def test_fashion_mnist_to_png_shards(tmp_path):
    dataset = FashionMnistDataset(split="test", data_dir=make_fashion_dir(tmp_path / "fm"),
                                  cache_dir=tmp_path / "c", download=False)
    report = write_shards(dataset_records(dataset, indices=range(4)), out_dir=tmp_path / "out",
                          prefix="test", samples_per_shard=10)
    assert report.pattern == str(tmp_path / "out" / "test-000000.tar")
    files = members(report.shard_paths[0])
    decoded = np.asarray(Image.open(BytesIO(files["000000002.png"])))
    assert np.array_equal(decoded[..., 0], dataset.images[2])
    assert files["000000002.txt"].decode() == dataset.read(2, epoch=0).caption


def test_all_bad_raises(tmp_path):
    dataset = CsvDataset(make_manifest(tmp_path, 2, bad={0: "missing", 1: "missing"}))
    with pytest.raises(ValueError, match="all 2 samples were bad"):
        write_shards(dataset_records(dataset), out_dir=tmp_path / "o", prefix="p",
                     samples_per_shard=1)
