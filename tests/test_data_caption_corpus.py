import pytest

import cliplab.data.caption_corpus as caption_corpus_module
from cliplab.data.caption_corpus import caption_corpus
from cliplab.data.config import DataConfig
from cliplab.data.csv_dataset import CsvDataset
from cliplab.data.fashion_mnist import fashion_mnist_caption_corpus
from cliplab.data.webdataset_writer import dataset_records, write_shards
from cliplab.errors import UserError
from data_fixtures import make_manifest, make_parquet


def test_fashion_mnist_uses_the_built_in_corpus():
    assert caption_corpus(DataConfig()) == fashion_mnist_caption_corpus()


def test_csv_reads_the_caption_column(tmp_path):
    manifest = make_manifest(tmp_path, 5, bad={2: "missing"})  # a missing image still has its caption
    assert caption_corpus(DataConfig(dataset_type="csv", train_data=str(manifest))) == [
        f"caption {i}" for i in range(5)]
    (tmp_path / "m.csv").write_text("image,alt\na.png,a red bicycle\nb.png,\nc.png,two dogs\n")
    config = DataConfig(dataset_type="csv", train_data=str(tmp_path / "m.csv"), csv_separator=",",
                        csv_img_key="image", csv_caption_key="alt")
    assert caption_corpus(config) == ["a red bicycle", "two dogs"]


def test_csv_errors_name_the_config_key_or_the_file(tmp_path):
    manifest = make_manifest(tmp_path, 2)
    with pytest.raises(UserError, match=r"config key 'data.csv_caption_key' \(--csv-caption-key\) names "
                       r"'caption', which is not a column of .*manifest.tsv \(columns: \['filepath', 'title', "
                       r"'label'\]"):
        caption_corpus(DataConfig(dataset_type="csv", train_data=str(manifest), csv_caption_key="caption"))
    with pytest.raises(UserError, match=r"manifest .*absent.tsv does not exist"):
        caption_corpus(DataConfig(dataset_type="csv", train_data=str(tmp_path / "absent.tsv")))
    with pytest.raises(UserError, match="'data.train_data' .* must be set for dataset_type 'csv'"):
        caption_corpus(DataConfig(dataset_type="csv", val_data=str(manifest)))


def test_webdataset_reads_the_txt_members_in_shard_order(tmp_path):
    dataset = CsvDataset(make_manifest(tmp_path / "set", 10, bad={4: "empty-caption"}))
    report = write_shards(dataset_records(dataset), out_dir=tmp_path / "shards", prefix="train",
                          samples_per_shard=3)
    (tmp_path / "shards" / "train-000003.tar").write_bytes(b"not a tar file")  # passed over
    config = DataConfig(dataset_type="webdataset", train_data=str(tmp_path / "shards" / "train-{000000..000003}.tar"))
    assert len(report.shard_paths) == 3
    assert caption_corpus(config) == [f"caption {i}" for i in range(10) if i != 4]


def test_parquet_reads_the_caption_column(tmp_path):
    pytest.importorskip("pyarrow")
    make_parquet(tmp_path / "pq" / "0.parquet", 4, caption_key="text", bad={1: "null-caption"})
    make_parquet(tmp_path / "pq" / "1.parquet", 3, first=4, caption_key="text")
    assert caption_corpus(DataConfig(dataset_type="parquet", train_data=str(tmp_path / "pq"))) == [
        "caption 0", "caption 2", "caption 3", "caption 4", "caption 5", "caption 6"]
    with pytest.raises(UserError, match=r"no column 'alt' \(data.parquet_caption_key, --parquet-caption-key\)"):
        caption_corpus(DataConfig(dataset_type="parquet", train_data=str(tmp_path / "pq"), parquet_caption_key="alt"))


@pytest.mark.parametrize("source", ["csv", "webdataset", "parquet"])
def test_at_most_max_corpus_captions_are_read_the_first_ones(tmp_path, monkeypatch, source):
    monkeypatch.setattr(caption_corpus_module, "MAX_CORPUS_CAPTIONS", 7)
    manifest = make_manifest(tmp_path / "set", 12)
    if source == "csv":
        location = str(manifest)
    elif source == "webdataset":
        location = write_shards(dataset_records(CsvDataset(manifest)), out_dir=tmp_path / "shards", prefix="train",
                                samples_per_shard=5).pattern
    else:
        pytest.importorskip("pyarrow")
        location = str(make_parquet(tmp_path / "a.parquet", 12))
    assert caption_corpus(DataConfig(dataset_type=source, train_data=location)) == [
        f"caption {i}" for i in range(7)]


def test_data_without_any_caption_is_a_user_error(tmp_path):
    pytest.importorskip("pyarrow")
    path = make_parquet(tmp_path / "a.parquet", 3, bad={0: "null-caption", 1: "empty-caption", 2: "null-caption"})
    with pytest.raises(UserError, match="holds no caption to train a tokenizer on"):
        caption_corpus(DataConfig(dataset_type="parquet", train_data=str(path)))
