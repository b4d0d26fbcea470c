import re

import numpy as np
import pytest

from cliplab.data.caption_corpus import caption_corpus
from cliplab.data.config import DataConfig
from cliplab.data.csv_dataset import CsvDataset
from cliplab.data.samples import BadSampleError
from cliplab.errors import InvalidInputError, UserError
from data_fixtures import make_manifest


def test_reads_pixels_and_captions_relative_to_manifest(tmp_path):
    manifest = make_manifest(tmp_path / "set", 5)
    dataset = CsvDataset(manifest, label_key="label")
    assert len(dataset) == 5
    sample = dataset.read(3, epoch=0)
    assert sample.caption == "caption 3"
    assert sample.label == 3
    assert sample.source == str((tmp_path / "set" / "images" / "3.png").resolve())
    assert np.asarray(sample.image)[0, 0].tolist() == [3, 1, 252]
    assert CsvDataset(manifest).read(3, epoch=0).label == -1


def test_custom_columns_and_separator(tmp_path):
    make_manifest(tmp_path, 2)
    (tmp_path / "m.csv").write_text("caption,image\nhello,images/1.png\n")
    dataset = CsvDataset(tmp_path / "m.csv", img_key="image", caption_key="caption",
                         separator=",")
    assert dataset.read(0, epoch=0).caption == "hello"
    assert np.asarray(dataset.read(0, epoch=0).image)[0, 0].tolist() == [1, 0, 254]


def test_missing_column_lists_columns_present(tmp_path):
    manifest = make_manifest(tmp_path, 2)
    with pytest.raises(ValueError, match=r"no column 'caption' \(caption_key\); its columns are "
                       r"\['filepath', 'title', 'label'\]"):
        CsvDataset(manifest, caption_key="caption")


def test_missing_manifest_and_empty_manifest(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        CsvDataset(tmp_path / "nope.tsv")
    (tmp_path / "empty.tsv").write_text("filepath\ttitle\n")
    with pytest.raises(ValueError, match="lists no samples"):
        CsvDataset(tmp_path / "empty.tsv")


def test_non_integer_label_names_line(tmp_path):
    (tmp_path / "m.tsv").write_text("filepath\ttitle\tlabel\na.png\tx\tcat\n")
    with pytest.raises(ValueError, match="line 2: column 'label' must hold an integer"):
        CsvDataset(tmp_path / "m.tsv", label_key="label")


@pytest.mark.parametrize("kind, reason", [("missing", "does not exist"),
                                          ("truncated", "cannot decode"),
                                          ("garbage", "cannot decode"),
                                          ("empty-caption", "empty caption")])
def test_bad_samples_raise_bad_sample_error_naming_file(tmp_path, kind, reason):
    dataset = CsvDataset(make_manifest(tmp_path, 3, bad={1: kind}))
    with pytest.raises(BadSampleError, match=reason) as caught:
        dataset.read(1, epoch=0)
    assert caught.value.source.endswith("images/1.png")
    assert dataset.read(2, epoch=0).caption == "caption 2"


def _manifest_with(tmp_path, replace_from: bytes, replace_to: bytes):
    manifest = make_manifest(tmp_path / "set", 6)
    manifest.write_bytes(manifest.read_bytes().replace(replace_from, replace_to))
    return manifest


@pytest.mark.parametrize("content, message", [
    ((b"caption 3", b"caption \xff3"),  # line 5: the header, then rows 0..3
     "manifest {m} line 5: not UTF-8 text (byte 0xff); save the manifest as UTF-8"),
    ((b"caption 2", b"x" * 131_073),
     "manifest {m} line 4: a field is longer than 131072 characters (a caption that long, or a quote that is never "
     "closed)"),
])
def test_an_unreadable_manifest_names_its_file_and_line(tmp_path, content, message):
    # Before: UnicodeDecodeError, _csv.Error tracebacks.
    manifest = _manifest_with(tmp_path, *content)
    with pytest.raises(InvalidInputError) as refused:
        CsvDataset(manifest)
    assert str(refused.value) == message.format(m=manifest)
    with pytest.raises(UserError) as in_corpus:  # the tokenizer's corpus reads it the same way
        caption_corpus(DataConfig(dataset_type="csv", train_data=str(manifest)))
    assert str(in_corpus.value) == "config key 'data.train_data' (--train-data): " + message.format(m=manifest)


def test_a_directory_given_as_a_manifest_is_named_as_one(tmp_path):
    # Before: IsADirectoryError (and "manifest ... does not exist" from the caption corpus).
    with pytest.raises(InvalidInputError) as refused:
        CsvDataset(tmp_path)
    assert str(refused.value) == (f"manifest {tmp_path} is a directory; expected a CSV or TSV file listing image paths "
                                  "and captions")


def _list_manifest(directory, cells):
    """A manifest over make_manifest's images whose `title` cells are `cells` (JSON lists or text)."""
    make_manifest(directory, len(cells))
    rows = ["filepath\ttitle"] + [f"images/{index}.png\t{cell}" for index, cell in enumerate(cells)]
    (directory / "lists.tsv").write_text("\n".join(rows) + "\n")
    return directory / "lists.tsv"


def test_a_json_list_cell_trains_on_one_caption_per_epoch_and_keeps_them_all(tmp_path):
    from cliplab.data.caption_lists import drawn_caption

    cells = ['["a red one", "a red square", "red"]', "plain caption", '["only one"]']
    dataset = CsvDataset(_list_manifest(tmp_path, cells), caption_seed=5)
    first = [dataset.read(0, epoch=epoch) for epoch in range(12)]
    assert all(sample.captions == ("a red one", "a red square", "red") for sample in first)
    assert [sample.caption for sample in first] == [drawn_caption(first[0].captions, seed=5, epoch=epoch, key=0)
                                                    for epoch in range(12)]
    assert {sample.caption for sample in first} == set(first[0].captions)
    assert dataset.read(1, epoch=3).captions == ("plain caption",) and dataset.read(2, epoch=3).caption == "only one"


@pytest.mark.parametrize("cell, reason", [("[]", "the list of captions is empty"),
                                          ('["ok", " "]', "caption 1 of the list must be non-empty text")])
def test_a_bad_list_is_refused_when_the_manifest_is_read(tmp_path, cell, reason):
    with pytest.raises(InvalidInputError, match=rf"lists.tsv line 3, column 'title': {re.escape(reason)}"):
        CsvDataset(_list_manifest(tmp_path, ['["ok"]', cell]))


def test_the_corpus_reads_every_caption_of_a_list(tmp_path):
    manifest = _list_manifest(tmp_path, ['["one", "two"]', "three", "[]"])
    assert caption_corpus(DataConfig(dataset_type="csv", train_data=str(manifest))) == ["one", "two", "three"]
