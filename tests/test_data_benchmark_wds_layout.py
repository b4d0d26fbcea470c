"""CLIP_benchmark's webdataset layout: what cliplab writes, CLIP_benchmark's own reader reads back the
same, and cliplab's reader reads what CLIP_benchmark reads."""

import numpy as np
import pytest

from benchmark_fixtures import CLASSNAMES, memory_split
from clip_benchmark_oracle import wds_samples
from cliplab.data.benchmark import open_benchmark_dataset
from cliplab.data.benchmark.wds_layout import names_of
from cliplab.data.benchmark.wds_writer import write_clip_benchmark_split
from cliplab.errors import UserError

TEMPLATES = ("a photo of the {}.", "a {} seen from above.")
pytestmark = pytest.mark.filterwarnings(r"ignore:WebDataset\(shardshuffle=:UserWarning")  # CLIP_benchmark's reader


def _write(directory, split, **kwargs):
    return write_clip_benchmark_split(split, directory, classnames=CLASSNAMES, templates=TEMPLATES,
                                      samples_per_shard=4, **kwargs)


def test_written_split_reads_back_the_same_in_cliplab_and_clip_benchmark(tmp_path):
    directory = tmp_path / "wds_tiny"
    source = memory_split("test", 9, seed=1)
    written = _write(directory, source)
    assert [path.name for path in written.shards] == ["0.tar", "1.tar", "2.tar"]
    assert (directory / "test" / "nshards.txt").read_text() == "3\n"

    dataset = open_benchmark_dataset(str(directory))
    split = dataset.split("test")
    assert dataset.layout == "clip_benchmark" and dataset.name == "wds/tiny"
    assert split.labels == source.labels and split.captions == source.captions
    for index in range(len(source)):
        assert np.array_equal(np.asarray(split.images.read(index)), np.asarray(source.images.read(index)))
    assert dataset.classnames.values == CLASSNAMES
    assert dataset.templates.values == ("a photo of the {c}.", "a {c} seen from above.")

    samples, classes, templates = wds_samples(directory, "test", "zeroshot_classification")
    assert classes == list(CLASSNAMES) and templates == list(dataset.templates.values)
    assert [label for _, label in samples] == list(source.labels)
    for index, (image, _) in enumerate(samples):
        assert np.array_equal(np.asarray(image.convert("RGB")), np.asarray(source.images.read(index)))


def test_retrieval_sets_read_their_caption_lines_as_clip_benchmark_does(tmp_path):
    directory = tmp_path / "wds_captions"
    source = memory_split("test", 5, seed=2, labels=False)
    write_clip_benchmark_split(source, directory, classnames=None, templates=None, samples_per_shard=10)
    (directory / "dataset_type.txt").write_text("retrieval\n")
    dataset = open_benchmark_dataset(str(directory))
    samples, _, _ = wds_samples(directory, "test", "zeroshot_retrieval")
    assert dataset.retrieval_only and dataset.split("test").labels is None
    assert [tuple(captions) for _, captions in samples] == list(dataset.split("test").captions) == list(
        source.captions)


def test_an_existing_split_is_never_written_over(tmp_path):
    _write(tmp_path / "out", memory_split("test", 3, seed=0))
    with pytest.raises(UserError, match=r"out/test exists already"):
        _write(tmp_path / "out", memory_split("test", 3, seed=0))
    _write(tmp_path / "out", memory_split("train", 3, seed=5))  # the other split, same class names: fine
    with pytest.raises(UserError, match=r"classnames.txt exists and lists something else"):
        write_clip_benchmark_split(memory_split("val", 2, seed=0), tmp_path / "out", classnames=("x", "y"),
                                   templates=None, samples_per_shard=4)


def test_bad_layouts_are_one_line_naming_the_file(tmp_path):
    directory = tmp_path / "broken"
    _write(directory, memory_split("test", 5, seed=3))
    (directory / "test" / "nshards.txt").write_text("4\n")
    with pytest.raises(UserError, match=r"nshards.txt lists 4 shards but .*test/2.tar does not exist"):
        open_benchmark_dataset(str(directory)).split("test")
    (directory / "dataset_type.txt").write_text("multilabel\n")
    with pytest.raises(UserError, match=r"dataset_type.txt: multilabel datasets"):
        open_benchmark_dataset(str(directory))


def test_hub_repository_names_give_clip_benchmark_dataset_names(tmp_path):
    assert names_of(tmp_path / "wds_vtab-cifar10") == ("wds/vtab/cifar10", ("wds/vtab/cifar10", "vtab/cifar10",
                                                                           "cifar10"))
    assert names_of(tmp_path / "wds_imagenet1k") == ("wds/imagenet1k", ("wds/imagenet1k", "imagenet1k"))
