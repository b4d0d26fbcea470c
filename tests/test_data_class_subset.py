"""--train-classes: a dataset restricted to some labels, read by the samples' own indices; refused by
name where the data has no labels read with it."""

import pytest

from cliplab.data import DataConfig
from cliplab.data.class_subset import ClassSubset
from cliplab.errors import UserError
from cliplab.train.setup.data import build_train_dataset

from data_fixtures import make_manifest


class Labelled:
    labels = [3, 0, 1, 3, 2, 0]

    def __len__(self):
        return len(self.labels)

    def read(self, index, *, epoch):
        return (index, epoch)


def test_the_kept_samples_are_read_by_their_own_index():
    subset = ClassSubset(Labelled(), (0, 3), what="the data")
    assert len(subset) == 4 and subset.labels == [3, 0, 3, 0]
    assert [subset.read(index, epoch=2) for index in range(4)] == [(0, 2), (1, 2), (3, 2), (5, 2)]
    with pytest.raises(UserError, match=r"--train-classes 0,7 \(data.train_classes\): the data has no sample of "
                                        r"class 7$"):
        ClassSubset(Labelled(), (0, 7), what="the data")


def test_a_labelled_manifest_trains_on_its_classes_only(tmp_path):
    manifest = make_manifest(tmp_path, 30)  # labels index % 10
    config = DataConfig(dataset_type="csv", train_data=str(manifest), csv_label_key="label", train_classes=(1, 2))
    dataset = build_train_dataset(config)
    assert len(dataset) == 6 and sorted({dataset.read(i, epoch=0).label for i in range(6)}) == [1, 2]
    assert dataset.read(0, epoch=0).source.endswith("1.png")


@pytest.mark.parametrize("values", [
    {"dataset_type": "csv", "train_data": "x.tsv"},  # no label column
    {"dataset_type": "webdataset", "train_data": "x-{0..1}.tar"},
    {"dataset_type": "parquet", "train_data": "x.parquet"},
])
def test_data_without_labels_read_with_it_is_refused(values):
    with pytest.raises(ValueError, match="train_classes needs labels read with the data"):
        DataConfig(**values, train_classes=(1,))


def test_a_mixture_of_sources_is_refused_naming_it():
    with pytest.raises(ValueError, match="train_classes restricts one source; train_data 'a.tsv::b.tsv' is a mixture"):
        DataConfig(dataset_type="csv", train_data="a.tsv::b.tsv", csv_label_key="label", train_classes=(1,))
