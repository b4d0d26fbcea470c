"""CSV/TSV and parquet files as benchmark datasets (csv_table, parquet_table, table_keys)."""

import io
import json

import numpy as np
import pytest

from benchmark_fixtures import captions_for, labels_for, random_images, write_manifest
from cliplab.data.benchmark import DatasetOptions, TableKeys, open_benchmark_dataset
from cliplab.errors import UserError


def test_manifest_rows_of_one_image_add_their_captions(tmp_path):
    images = random_images(3, seed=0)
    manifest = write_manifest(tmp_path / "coco.tsv", images, captions=[["a"], ["b", "c"], ["d"]])
    with open(manifest, "a", encoding="utf-8") as handle:  # a second row for the first image (COCO style)
        handle.write("coco_000.png\tanother caption\n")
    split = open_benchmark_dataset(str(manifest)).split("test")
    assert split.labels is None and split.captions == (("a", "another caption"), ("b", "c"), ("d",))
    assert np.array_equal(np.asarray(split.images.read(1)), np.asarray(images[1]))


def test_a_directory_of_split_files_with_labels_and_their_own_class_names(tmp_path):
    for split, count in (("train", 8), ("test", 5)):
        write_manifest(tmp_path / "set" / f"{split}.csv", random_images(count, seed=count),
                       labels=labels_for(count, seed=count, num_classes=3), separator=",")
    (tmp_path / "set" / "classnames.txt").write_text("cat\ndog\nbird\n")
    dataset = open_benchmark_dataset(str(tmp_path / "set"))
    assert dataset.layout == "csv" and set(dataset.split_names) == {"train", "test"}
    assert dataset.split("train").labels == tuple(labels_for(8, seed=8, num_classes=3))
    assert dataset.classnames.values == ("cat", "dog", "bird")


def test_conflicting_labels_and_missing_columns_are_one_line(tmp_path):
    manifest = write_manifest(tmp_path / "m.tsv", random_images(2, seed=0), labels=[0, 1])
    with open(manifest, "a", encoding="utf-8") as handle:
        handle.write("m_000.png\t1\n")
    with pytest.raises(UserError, match=r"m.tsv line 4: image m_000.png has label 1 here and 0"):
        open_benchmark_dataset(str(manifest)).split("test")
    with pytest.raises(UserError, match=r"no column 'caption' \(--caption-key\)"):
        open_benchmark_dataset(str(manifest), DatasetOptions(keys=TableKeys(caption_key="caption"))).split("test")


def test_parquet_rows_with_caption_lists_and_labels(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    images = random_images(5, seed=4)
    encoded = []
    for image in images:
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    labels = labels_for(5, seed=4, num_classes=3)
    captions = captions_for(labels)
    table = pa.table({"image": pa.array(encoded, pa.binary()), "label": pa.array(labels, pa.int64()),
                      "captions": pa.array(captions, pa.list_(pa.string()))})
    pq.write_table(table, tmp_path / "test.parquet", row_group_size=2)
    split = open_benchmark_dataset(str(tmp_path / "test.parquet")).split("test")
    assert split.labels == tuple(labels) and split.captions == tuple(tuple(texts) for texts in captions)
    for index in (4, 0, 3):  # across row groups, in any order
        assert np.array_equal(np.asarray(split.images.read(index)), np.asarray(images[index]))
    pq.write_table(pa.table({"image": pa.array(encoded, pa.binary()),
                             "caption": pa.array([json.dumps(["x", "y"])] * 5)}), tmp_path / "json.parquet")
    assert open_benchmark_dataset(str(tmp_path / "json.parquet")).split("test").captions[0] == ("x", "y")


def test_a_path_that_is_no_layout_is_one_line(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UserError, match=r"dataset .*notes.txt: not a dataset layout cliplab reads"):
        open_benchmark_dataset(str(tmp_path / "notes.txt"))
    with pytest.raises(UserError, match=r"dataset .*missing: no such file or directory"):
        open_benchmark_dataset(str(tmp_path / "missing"))
