import json

import pytest

from cliplab.data.config import DataConfig
from cliplab.data.csv_dataset import CsvDataset
from cliplab.data.loader import build_eval_loader, build_train_loader
from cliplab.data.webdataset_counts import count_shard_samples
from cliplab.data.webdataset_writer import dataset_records, write_shards
from cliplab.errors import UserError
from data_fixtures import first_pixel_transform, length_tokenize, make_manifest


def cliplab_shards(tmp_path, count, per_shard, prefix="train"):
    dataset = CsvDataset(make_manifest(tmp_path / "set", count))
    return write_shards(dataset_records(dataset), out_dir=tmp_path / "shards", prefix=prefix,
                        samples_per_shard=per_shard)


def img2dataset_shards(directory, counts, *, stats=True, metadata=False):
    """Empty tars named as img2dataset names them, with `NNNNN_stats.json` and/or `NNNNN.parquet`."""
    directory.mkdir(parents=True, exist_ok=True)
    for shard, successes in enumerate(counts):
        (directory / f"{shard:05d}.tar").write_bytes(b"")
        if stats:
            (directory / f"{shard:05d}_stats.json").write_text(json.dumps(
                {"count": successes + 3, "successes": successes, "failed_to_download": 3,
                 "failed_to_resize": 0, "duration": 1.5, "status_dict": {"success": successes}}))
        if metadata:
            import pyarrow as pa
            import pyarrow.parquet as pq

            status = ["success"] * successes + ["failed_to_download"] * 3
            pq.write_table(pa.table({"key": [str(i) for i in range(len(status))], "status": status}),
                           directory / f"{shard:05d}.parquet")
    return str(directory / ("{00000..%05d}.tar" % (len(counts) - 1)))


def test_cliplab_shards_record_each_shards_count(tmp_path):
    report = cliplab_shards(tmp_path, 10, per_shard=4)
    info = json.loads((tmp_path / "shards" / "train-info.json").read_text())
    assert info["shard_num_samples"] == report.shard_num_samples == [4, 4, 2]
    assert count_shard_samples(report.pattern).total == 10
    # a pattern naming some of the shards counts those
    assert count_shard_samples(str(tmp_path / "shards" / "train-{000001..000002}.tar")).total == 6
    assert count_shard_samples(report.shard_paths[2]).total == 2


def test_an_older_info_file_counts_only_the_whole_set(tmp_path):
    report = cliplab_shards(tmp_path, 10, per_shard=4)
    info_path = tmp_path / "shards" / "train-info.json"
    info = json.loads(info_path.read_text())
    del info["shard_num_samples"]  # as `cliplab shards` wrote it before recording per-shard counts
    info_path.write_text(json.dumps(info))
    assert count_shard_samples(report.pattern).total == 10
    part = count_shard_samples(str(tmp_path / "shards" / "train-{000000..000001}.tar"))
    assert part.total is None and len(part.uncounted) == 2


def test_img2dataset_stats_files_give_the_successes(tmp_path):
    pattern = img2dataset_shards(tmp_path / "laion", [7, 0, 5])
    assert count_shard_samples(pattern).total == 12


def test_img2dataset_parquet_metadata_counts_the_successful_rows(tmp_path):
    pytest.importorskip("pyarrow")
    pattern = img2dataset_shards(tmp_path / "laion", [7, 2], stats=False, metadata=True)
    assert count_shard_samples(pattern).total == 9
    (tmp_path / "laion" / "00000_stats.json").write_text(json.dumps({"successes": 6}))
    assert count_shard_samples(pattern).total == 8  # the stats file comes first


def test_no_count_is_a_user_error_naming_the_pattern_and_the_three_ways(tmp_path):
    pattern = img2dataset_shards(tmp_path / "laion", [3, 4], stats=False)
    counts = count_shard_samples(pattern)
    assert counts.total is None and counts.uncounted == [str(tmp_path / "laion" / "00000.tar"),
                                                         str(tmp_path / "laion" / "00001.tar")]
    with pytest.raises(UserError) as caught:
        counts.required(flag="--train-num-samples", key="data.train_num_samples")
    message = str(caught.value)
    assert message.startswith(f"webdataset shards {pattern!r}: cannot tell how many samples they hold "
                              "(2 of 2 shards have no count next to them")
    for way in ("1. pass --train-num-samples N (data.train_num_samples)", "2. write the shards with "
                "`cliplab shards`", "3. keep img2dataset's NNNNN_stats.json (field 'successes')"):
        assert way in message


def test_a_malformed_stats_file_is_a_user_error_naming_it(tmp_path):
    pattern = img2dataset_shards(tmp_path / "laion", [3])
    stats = tmp_path / "laion" / "00000_stats.json"
    stats.write_text(json.dumps({"successes": "three"}))
    with pytest.raises(UserError, match=f"{stats}: expected a sample count >= 0 in field 'successes', "
                       "found 'three'"):
        count_shard_samples(pattern)
    stats.write_text("{not json")
    with pytest.raises(UserError, match=f"{stats}: cannot read it as JSON"):
        count_shard_samples(pattern)


def loader_arguments(**kwargs):
    arguments = dict(transform=first_pixel_transform, tokenize=length_tokenize, batch_size=4, workers=0,
                     pin_memory=False)
    return arguments | kwargs


def test_webdataset_training_takes_its_epoch_from_the_shards_and_the_flag_wins(tmp_path):
    report = cliplab_shards(tmp_path, 10, per_shard=4)
    config = DataConfig(dataset_type="webdataset", train_data=report.pattern, val_data=report.pattern,
                        workers=0)  # no train_num_samples: once refused by DataConfig itself
    loader, num_batches = build_train_loader(config, **loader_arguments(rank=0, world_size=1, seed=0, epoch=0))
    assert num_batches == 3 and len(list(loader)) == 3  # ceil(10 / 4)
    _, num_batches = build_train_loader(config, **loader_arguments(rank=0, world_size=2, seed=0, epoch=0))
    assert num_batches == 2  # ceil(10 / (4 x 2))
    config.train_num_samples = 40
    _, num_batches = build_train_loader(config, **loader_arguments(rank=0, world_size=1, seed=0, epoch=0))
    assert num_batches == 10
    loader, num_batches = build_eval_loader(config, **loader_arguments())
    assert num_batches == 3 and sum(len(batch["sample_ids"]) for batch in loader) == 10


def test_webdataset_training_without_any_count_fails_when_the_loader_is_built(tmp_path):
    pattern = img2dataset_shards(tmp_path / "laion", [3, 4], stats=False)
    config = DataConfig(dataset_type="webdataset", train_data=pattern, val_data=pattern, workers=0)
    with pytest.raises(UserError, match="cannot tell how many samples.*--train-num-samples N"):
        build_train_loader(config, **loader_arguments(rank=0, world_size=1, seed=0, epoch=0))
    _, num_batches = build_eval_loader(config, **loader_arguments())
    assert num_batches is None  # evaluation reads the shards once: no count needed
