import io
import tarfile

import pytest
from torch.utils.data import DataLoader

from cliplab.data.csv_dataset import CsvDataset
from cliplab.data.samples import BadSampleError
from cliplab.data.webdataset_writer import dataset_records, write_shards
from cliplab.data.webdataset_source import WebDatasetBatches, decode_sample, expand_shard_urls
from data_fixtures import first_pixel_transform, length_tokenize, make_manifest


def make_shards(tmp_path, count=24, per_shard=4, bad=None):
    dataset = CsvDataset(make_manifest(tmp_path / "set", count, bad=bad), label_key="label")
    return write_shards(dataset_records(dataset), out_dir=tmp_path / "shards", prefix="train",
                        samples_per_shard=per_shard)


def batches(pattern, *, workers=0, **kwargs):
    arguments = dict(transform=first_pixel_transform, tokenize=length_tokenize, batch_size=4,
                     rank=0, world_size=1, seed=0, epoch=0, num_batches=None)
    dataset = WebDatasetBatches(pattern, **{**arguments, **kwargs})
    loader = DataLoader(dataset, batch_size=None, num_workers=workers)
    return list(loader)


def ids(batch_list):
    return [i for batch in batch_list for i in batch["sample_ids"].tolist()]


def test_eval_pass_yields_the_samples_the_files_hold(tmp_path):
    report = make_shards(tmp_path, count=10)
    result = batches(report.pattern)
    assert ids(result) == list(range(10))
    assert [len(b["sample_ids"]) for b in result] == [4, 4, 2]
    first = result[0]
    assert (first["images"][:, 0, 0, 0] * 255).round().long().tolist() == [0, 1, 2, 3]
    assert first["labels"].tolist() == [0, 1, 2, 3]
    assert first["tokens"].tolist() == length_tokenize([f"caption {i}" for i in range(4)]).tolist()


def test_brace_expansion_and_missing_shards(tmp_path):
    report = make_shards(tmp_path, count=8)
    assert expand_shard_urls(report.pattern) == report.shard_paths
    with pytest.raises(FileNotFoundError, match="1 of 3 shards"):
        expand_shard_urls(str(tmp_path / "shards" / "train-{000000..000002}.tar"))


def test_slots_are_disjoint_and_cover(tmp_path):
    report = make_shards(tmp_path, count=28, per_shard=4)  # 7 shards
    seen = []
    for rank in range(2):
        dataset = WebDatasetBatches(report.pattern, transform=first_pixel_transform,
                                    tokenize=length_tokenize, batch_size=4, rank=rank,
                                    world_size=2, seed=0, epoch=3, num_batches=10)
        for worker in range(3):
            seen.append(dataset.slot_shards(worker, 3))
    flat = [url for slot in seen for url in slot]
    assert sorted(flat) == sorted(report.shard_paths) and len(flat) == 7


@pytest.mark.parametrize("resampled", [False, True])
def test_training_yields_declared_batches_per_rank(tmp_path, resampled):
    report = make_shards(tmp_path, count=24, per_shard=4)  # 6 shards
    per_rank = []
    for rank in range(2):
        result = batches(report.pattern, workers=2, rank=rank, world_size=2, num_batches=5,
                         resampled=resampled, shuffle_buffer=8)
        assert len(result) == 5 and all(len(b["sample_ids"]) == 4 for b in result)
        per_rank.append(ids(result))
    if not resampled:
        # each rank reads only its own shards, so the ranks' samples never overlap
        assert not set(per_rank[0]) & set(per_rank[1])


def test_corrupt_samples_and_truncated_shard_are_skipped_and_counted(tmp_path):
    report = make_shards(tmp_path, count=12, per_shard=4)
    # a sample with an undecodable image and an empty caption, appended to shard 0
    with tarfile.open(report.shard_paths[0], "a") as tar:
        for name, data in (("000000100.png", b"garbage"), ("000000100.txt", b"x"),
                           ("000000101.png", (tmp_path / "set/images/1.png").read_bytes()),
                           ("000000101.txt", b" ")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    last = report.shard_paths[2]
    raw = open(last, "rb").read()
    open(last, "wb").write(raw[:700])
    result = batches(report.pattern)
    skipped = sum(b["skipped"] for b in result)
    examples = [e for b in result for e in b["skipped_examples"]]
    assert skipped == 3
    assert any("000000100: cannot decode image" in e for e in examples)
    assert any("000000101: empty or missing caption" in e for e in examples)
    assert any("train-000002.tar" in e and "unreadable shard" in e for e in examples)
    assert set(ids(result)) <= set(range(12)) and set(range(8)) <= set(ids(result))


def test_decode_sample_errors():
    with pytest.raises(BadSampleError, match="no image file"):
        decode_sample({"__key__": "1", "__url__": "u", "txt": b"hi"})


def test_too_few_shards_without_resampling(tmp_path):
    report = make_shards(tmp_path, count=4, per_shard=4)
    with pytest.raises(ValueError, match="1 shards cannot feed 2 ranks x 1 workers"):
        batches(report.pattern, rank=1, world_size=2, num_batches=2)


def test_a_json_caption_key_holds_one_caption_or_a_list():
    import json

    from cliplab.data.caption_lists import drawn_caption, text_key
    from data_fixtures import png_bytes

    sample = {"__key__": "000000007", "__url__": "s.tar", "png": png_bytes(7),
              "json": json.dumps({"captions": ["a cat", "the cat"], "label": 3}).encode()}
    raws = [decode_sample(sample, caption_key="captions", caption_seed=1, epoch=epoch)[0] for epoch in range(10)]
    assert all(raw.captions == ("a cat", "the cat") and raw.label == 3 for raw in raws)
    assert [raw.caption for raw in raws] == [drawn_caption(("a cat", "the cat"), seed=1, epoch=epoch,
                                                           key=text_key("000000007")) for epoch in range(10)]
    with pytest.raises(BadSampleError, match=r"s.tar:000000007: no key 'caption' in its .json \(--wds-caption-key\)"):
        decode_sample(sample, caption_key="caption")
    with pytest.raises(BadSampleError, match="the list of captions is empty"):
        decode_sample({**sample, "json": b'{"captions": []}'}, caption_key="captions")
    assert decode_sample({**sample, "txt": b'["x", "y"]'})[0].captions == ("x", "y")  # a .txt list, as a CSV cell


def test_shards_of_several_captions_evaluate_on_all_of_them(tmp_path):
    make_manifest(tmp_path / "set", 3)
    (tmp_path / "set" / "lists.tsv").write_text(
        'filepath\ttitle\nimages/0.png\t["a", "b"]\nimages/1.png\tc\nimages/2.png\t["d", "e", "f"]\n')
    report = write_shards(dataset_records(CsvDataset(tmp_path / "set" / "lists.tsv")), out_dir=tmp_path / "shards",
                          prefix="lists", samples_per_shard=2)
    (batch,) = batches(report.pattern, batch_size=3)
    assert batch["caption_lists"] == [["a", "b"], ["c"], ["d", "e", "f"]]
    assert batch["caption_tokens"].tolist() == length_tokenize(list("abcdef")).tolist()
    train = batches(report.pattern, batch_size=3, num_batches=1, shuffle_buffer=1, epoch=2)
    assert "caption_lists" not in train[0] and len(train[0]["captions"]) == 3
