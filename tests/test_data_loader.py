import pytest
import torch
import torch.distributed as dist

from cliplab.data.config import DataConfig
from cliplab.data.loader import build_eval_loader, build_train_loader
from cliplab.data.samples import TooManyBadSamplesError
from cliplab.data.webdataset_writer import dataset_records, write_shards
from cliplab.data.csv_dataset import CsvDataset
from cliplab.distributed.launch import run_on_workers
from data_fixtures import (first_pixel_transform, length_tokenize, make_fashion_dir,
                           make_manifest, make_parquet, random_augment_transform)


def fashion_config(tmp_path, **overrides):
    directory = make_fashion_dir(tmp_path / "fm", train_count=37, test_count=11)
    return DataConfig(train_data=str(directory), fashion_mnist_download=False,
                      cache_dir=str(tmp_path / "cache"), workers=0, **overrides)


def train_ids(config, *, rank, world_size, epoch, start_batch=0, workers=0, batch_size=4,
              transform=first_pixel_transform):
    loader, num_batches = build_train_loader(
        config, transform=transform, tokenize=length_tokenize, batch_size=batch_size, rank=rank,
        world_size=world_size, seed=7, epoch=epoch, start_batch=start_batch, workers=workers,
        pin_memory=False)
    batches = list(loader)
    return num_batches, batches


def test_fashion_mnist_train_epoch_and_eval(tmp_path):
    config = fashion_config(tmp_path)
    num_batches, batches = train_ids(config, rank=0, world_size=1, epoch=0)
    assert num_batches == 10 and len(batches) == 10
    ids = torch.cat([b["sample_ids"] for b in batches])
    assert set(ids.tolist()) == set(range(37))
    assert all(b["images"].shape == (4, 3, 28, 28) for b in batches)
    assert torch.equal(torch.cat([b["labels"] for b in batches]), ids % 10)
    loader, eval_batches = build_eval_loader(config, transform=first_pixel_transform,
                                             tokenize=length_tokenize, batch_size=5)
    result = list(loader)
    assert eval_batches == 3
    assert torch.cat([b["sample_ids"] for b in result]).tolist() == list(range(11))


@pytest.mark.parametrize("source", ["fashion-mnist", "parquet"])
def test_worker_count_does_not_change_batches(tmp_path, source):
    config = fashion_config(tmp_path) if source == "fashion-mnist" else parquet_config(tmp_path)
    _, without_workers = train_ids(config, rank=0, world_size=1, epoch=2,
                                   transform=random_augment_transform)
    _, with_workers = train_ids(config, rank=0, world_size=1, epoch=2, workers=2,
                                transform=random_augment_transform)
    for left, right in zip(without_workers, with_workers, strict=True):
        assert torch.equal(left["sample_ids"], right["sample_ids"])
        assert torch.equal(left["images"], right["images"])
        assert left["captions"] == right["captions"]


def resume_worker(rank, world_size, config, interrupt_at):
    """Sample ids of epochs 0-1 uninterrupted, and interrupted at epoch 1 batch `interrupt_at`."""
    def epoch_ids(epoch, start_batch=0, stop_after=None):
        loader, _ = build_train_loader(config, transform=first_pixel_transform,
                                       tokenize=length_tokenize, batch_size=3, rank=rank,
                                       world_size=world_size, seed=11, epoch=epoch,
                                       start_batch=start_batch, workers=0, pin_memory=False)
        ids = []
        for batch_index, batch in enumerate(loader, start=start_batch):
            if batch_index == stop_after:
                break  # the "kill": this batch was never trained on
            ids.append(batch["sample_ids"])
            # the batches stay in lock step across ranks, as DDP needs
            dist.all_reduce(torch.ones(1))
        return torch.cat(ids) if ids else torch.empty(0, dtype=torch.long)

    uninterrupted = torch.cat([epoch_ids(0), epoch_ids(1)])
    interrupted = torch.cat([epoch_ids(0), epoch_ids(1, stop_after=interrupt_at),
                             epoch_ids(1, start_batch=interrupt_at)])
    return uninterrupted, interrupted


def parquet_config(tmp_path, **overrides):
    """37 samples in 2 files of row groups of 5: 40 rows, 3 of them without an image (not samples)."""
    pytest.importorskip("pyarrow")
    make_parquet(tmp_path / "pq" / "part-0.parquet", 22, row_group_size=5, bad={3: "null-image", 11: "null-image"})
    make_parquet(tmp_path / "pq" / "part-1.parquet", 18, first=22, row_group_size=5, bad={0: "null-image"})
    return DataConfig(dataset_type="parquet", train_data=str(tmp_path / "pq"), val_data=str(tmp_path / "pq"),
                      workers=0, **overrides)


def resume_worker_per_source(rank, world_size, configs, interrupt_at):
    return [resume_worker(rank, world_size, config, interrupt_at) for config in configs]


def test_resume_on_two_gloo_ranks_sees_exactly_the_remaining_samples(tmp_path):
    configs = [fashion_config(tmp_path), parquet_config(tmp_path)]  # one spawn for both sources
    per_rank = run_on_workers(resume_worker_per_source, 2, configs, 4, timeout_s=120)
    for source in range(len(configs)):
        results = [per_rank[rank][source] for rank in range(2)]
        for uninterrupted, interrupted in results:
            assert torch.equal(uninterrupted, interrupted)
        first_epoch = torch.cat([results[rank][0][:21] for rank in range(2)])
        # within an epoch the two ranks together cover the 37 samples; 7 batches x 3 x 2 = 42 slots
        assert set(first_epoch.tolist()) == set(range(37)) and len(first_epoch) == 42


def test_parquet_train_epoch_and_eval(tmp_path):
    config = parquet_config(tmp_path, parquet_label_key="label")
    num_batches, batches = train_ids(config, rank=0, world_size=1, epoch=0)
    assert num_batches == 10 and len(batches) == 10
    ids = torch.cat([b["sample_ids"] for b in batches])
    assert set(ids.tolist()) == set(range(37))
    rows = [row for row in range(40) if row not in (3, 11, 22)]  # sample i is the i-th row with an image
    for batch in batches:
        expected = [f"caption {rows[i]}" for i in batch["sample_ids"].tolist()]
        assert batch["captions"] == expected
        assert batch["labels"].tolist() == [rows[i] % 10 for i in batch["sample_ids"].tolist()]
        assert (batch["images"][:, 0, 0, 0] * 255).round().long().tolist() == [rows[i] for i in
                                                                                batch["sample_ids"].tolist()]
    loader, eval_batches = build_eval_loader(config, transform=first_pixel_transform, tokenize=length_tokenize,
                                             batch_size=5)
    assert eval_batches == 8
    assert torch.cat([b["sample_ids"] for b in loader]).tolist() == list(range(37))


def lockstep_worker(rank, world_size, config):
    loader, num_batches = build_train_loader(config, transform=first_pixel_transform,
                                             tokenize=length_tokenize, batch_size=4, rank=rank,
                                             world_size=world_size, seed=0, epoch=0, workers=0,
                                             pin_memory=False)
    shapes = []
    for batch in loader:
        # a collective per batch: a rank with fewer batches would hang the other one
        dist.all_reduce(torch.ones(1))
        shapes.append(tuple(batch["images"].shape))
    return num_batches, shapes, loader.stats.samples_skipped


def test_bad_samples_on_one_rank_keep_ranks_in_step(tmp_path):
    manifest = make_manifest(tmp_path, 40)
    dataset = CsvDataset(manifest)
    config = DataConfig(dataset_type="csv", train_data=str(manifest), workers=0,
                        max_skip_fraction=0.3, skip_check_min_samples=10)
    loader, _ = build_train_loader(config, transform=first_pixel_transform,
                                   tokenize=length_tokenize, batch_size=4, rank=0, world_size=2,
                                   seed=0, epoch=0, workers=0, pin_memory=False)
    rank0_ids = sorted({i for b in loader for i in b["sample_ids"].tolist()})
    for index in rank0_ids[:5]:  # corrupt only samples rank 0 draws
        dataset.image_paths[index].write_bytes(b"broken")
    results = run_on_workers(lockstep_worker, 2, config, timeout_s=120)
    assert results[0][0] == results[1][0] == 5
    assert results[0][1] == results[1][1] == [(4, 3, 8, 8)] * 5
    assert results[0][2] >= 5 and results[1][2] == 0


def test_one_percent_bad_completes_with_exact_count_and_all_bad_fails(tmp_path):
    manifest = make_manifest(tmp_path / "a", 200, bad={17: "truncated", 123: "missing"})
    config = DataConfig(dataset_type="csv", train_data=str(manifest), workers=0,
                        max_skip_fraction=0.05, skip_check_min_samples=50)
    loader, num_batches = build_train_loader(
        config, transform=first_pixel_transform, tokenize=length_tokenize, batch_size=10, rank=0,
        world_size=1, seed=0, epoch=0, workers=2, pin_memory=False)
    batches = list(loader)
    assert len(batches) == num_batches == 20
    assert all(len(b["sample_ids"]) == 10 for b in batches)
    assert loader.stats.samples_skipped == sum(b["skipped"] for b in batches) == 2
    assert sorted(e.split("images/")[1].split(":")[0] for e in loader.stats.examples) == [
        "123.png", "17.png"]
    all_bad = make_manifest(tmp_path / "b", 20, bad={i: "garbage" for i in range(20)})
    config = DataConfig(dataset_type="csv", train_data=str(all_bad), workers=0)
    loader, _ = build_train_loader(config, transform=first_pixel_transform,
                                   tokenize=length_tokenize, batch_size=4, rank=0, world_size=1,
                                   seed=0, epoch=0, workers=0, pin_memory=False)
    with pytest.raises(TooManyBadSamplesError, match="cannot decode image"):
        list(loader)


def test_parquet_bad_rows_are_replaced_and_counted_exactly(tmp_path):
    pytest.importorskip("pyarrow")
    path = make_parquet(tmp_path / "a.parquet", 200, row_group_size=50,
                        bad={17: "garbage", 123: "empty-caption", 150: "null-image"})
    config = DataConfig(dataset_type="parquet", train_data=str(path), workers=0, max_skip_fraction=0.05,
                        skip_check_min_samples=50)
    loader, num_batches = build_train_loader(
        config, transform=first_pixel_transform, tokenize=length_tokenize, batch_size=10, rank=0,
        world_size=1, seed=0, epoch=0, workers=2, pin_memory=False)
    batches = list(loader)
    assert len(batches) == num_batches == 20  # 199 samples: the null-image row is none
    assert all(len(b["sample_ids"]) == 10 for b in batches)
    assert loader.stats.samples_skipped == sum(b["skipped"] for b in batches) == 2
    assert sorted(loader.stats.examples) == [f"{path}:row 123: empty caption",
                                             f"{path}:row 17: cannot decode image (not an image format PIL reads)"]


def test_threshold_stops_run_naming_files(tmp_path):
    manifest = make_manifest(tmp_path, 40, bad={i: "missing" for i in range(0, 40, 4)})
    config = DataConfig(dataset_type="csv", train_data=str(manifest), workers=0,
                        max_skip_fraction=0.1, skip_check_min_samples=20)
    loader, _ = build_train_loader(config, transform=first_pixel_transform,
                                   tokenize=length_tokenize, batch_size=4, rank=0, world_size=1,
                                   seed=0, epoch=0, workers=0, pin_memory=False)
    with pytest.raises(TooManyBadSamplesError, match=r"max_skip_fraction 10.0%.*\n.*\.png: image "
                       r"file does not exist"):
        list(loader)


def test_webdataset_config_end_to_end(tmp_path):
    dataset = CsvDataset(make_manifest(tmp_path / "set", 16))
    report = write_shards(dataset_records(dataset), out_dir=tmp_path / "shards", prefix="train",
                          samples_per_shard=4)
    config = DataConfig(dataset_type="webdataset", train_data=report.pattern,
                        val_data=report.pattern, train_num_samples=20, val_num_samples=16,
                        workers=0)
    loader, num_batches = build_train_loader(
        config, transform=first_pixel_transform, tokenize=length_tokenize, batch_size=4, rank=0,
        world_size=1, seed=0, epoch=0, workers=2, pin_memory=False)
    assert num_batches == 5 and len(list(loader)) == 5
    loader, num_batches = build_eval_loader(config, transform=first_pixel_transform,
                                            tokenize=length_tokenize, batch_size=4)
    assert num_batches == 4
    assert sorted(i for b in loader for i in b["sample_ids"].tolist()) == list(range(16))


def test_config_validation():
    with pytest.raises(ValueError, match="dataset_type must be one of"):
        DataConfig(dataset_type="tfrecord")
    with pytest.raises(ValueError, match="'parquet' needs train_data and/or val_data"):
        DataConfig(dataset_type="parquet")
    with pytest.raises(ValueError, match="parquet_caption_key must name a column"):
        DataConfig(dataset_type="parquet", train_data="x.parquet", parquet_caption_key="")
    # the shards' own count files are read when the loader is built (test_data_webdataset_counts.py)
    assert DataConfig(dataset_type="webdataset", train_data="x.tar").train_num_samples is None
    with pytest.raises(ValueError, match="max_skip_fraction"):
        DataConfig(max_skip_fraction=1.0)
    with pytest.raises(ValueError, match="csv_separator"):
        DataConfig(csv_separator="ab")
    with pytest.raises(TypeError):
        DataConfig("csv")
