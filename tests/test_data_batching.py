import pytest
import torch

from cliplab.data.batching import MapBatchAssembler
from cliplab.data.csv_dataset import CsvDataset
from cliplab.data.samples import TooManyBadSamplesError
from data_fixtures import (first_pixel_transform, length_tokenize, make_manifest,
                           random_augment_transform)


def assembler(dataset, refill=True, transform=first_pixel_transform, epoch=0):
    return MapBatchAssembler(dataset, transform=transform, tokenize=length_tokenize, seed=0,
                             epoch=epoch, refill=refill)


def test_batch_format(tmp_path):
    dataset = CsvDataset(make_manifest(tmp_path, 6), label_key="label")
    batch = assembler(dataset)[[4, 1, 2]]
    assert batch["images"].shape == (3, 3, 8, 8) and batch["images"].dtype == torch.float32
    assert batch["images"][:, 0, 0, 0].mul(255).round().tolist() == [4, 1, 2]
    assert batch["sample_ids"].tolist() == [4, 1, 2]
    assert batch["labels"].tolist() == [4, 1, 2]
    assert batch["tokens"].dtype == torch.long
    assert batch["tokens"].tolist() == length_tokenize(["caption 4", "caption 1", "caption 2"]).tolist()
    assert batch["skipped"] == 0 and batch["skipped_examples"] == []


def test_bad_samples_are_counted_and_replaced(tmp_path):
    dataset = CsvDataset(make_manifest(tmp_path, 30, bad={1: "truncated", 2: "missing"}))
    batch = assembler(dataset)[[0, 1, 2, 3]]
    assert len(batch["sample_ids"]) == 4
    assert batch["skipped"] >= 2
    assert batch["sample_ids"][0] == 0 and batch["sample_ids"][3] == 3
    assert not {1, 2} & set(batch["sample_ids"].tolist())
    assert "1.png: cannot decode" in batch["skipped_examples"][0]
    assert "2.png: image file does not exist" in batch["skipped_examples"][-1]
    # pixels still belong to the sample ids after replacement
    assert (batch["images"][:, 0, 0, 0] * 255).round().long().tolist() == batch["sample_ids"].tolist()
    assert assembler(dataset)[[0, 1, 2, 3]]["sample_ids"].tolist() == batch["sample_ids"].tolist()


def test_eval_drops_bad_samples_without_refill(tmp_path):
    dataset = CsvDataset(make_manifest(tmp_path, 4, bad={1: "garbage"}))
    batch = assembler(dataset, refill=False)[[0, 1, 2]]
    assert batch["sample_ids"].tolist() == [0, 2] and batch["skipped"] == 1
    empty = assembler(dataset, refill=False)[[1]]
    assert empty["sample_ids"].numel() == 0 and empty["skipped"] == 1


def test_all_bad_fails_with_examples(tmp_path):
    dataset = CsvDataset(make_manifest(tmp_path, 4, bad={i: "missing" for i in range(4)}))
    with pytest.raises(TooManyBadSamplesError, match=r"17 of the samples drawn for one batch of 4 "
                       r"were bad; examples:\n  .*0.png: image file does not exist"):
        assembler(dataset)[[0, 1, 2, 3]]


def test_augmentation_is_a_function_of_seed_epoch_index(tmp_path):
    dataset = CsvDataset(make_manifest(tmp_path, 5))
    first = assembler(dataset, transform=random_augment_transform)[[0, 1, 2]]["images"]
    torch.rand(100)  # the caller's RNG state must not matter...
    again = assembler(dataset, transform=random_augment_transform)[[2, 1, 0]]["images"]
    assert torch.equal(first, again.flip(0))
    other_epoch = assembler(dataset, transform=random_augment_transform, epoch=1)[[0]]["images"]
    assert not torch.equal(other_epoch[0], first[0])
    state = torch.random.get_rng_state()
    assembler(dataset, transform=random_augment_transform)[[0]]
    assert torch.equal(torch.random.get_rng_state(), state)  # ...nor be changed


def test_tokenizer_output_is_checked(tmp_path):
    dataset = CsvDataset(make_manifest(tmp_path, 2))
    broken = MapBatchAssembler(dataset, transform=first_pixel_transform,
                               tokenize=lambda captions: torch.zeros(len(captions), 3), seed=0,
                               epoch=0, refill=True)
    with pytest.raises(TypeError, match=r"LongTensor \[2, T\]"):
        broken[[0, 1]]
