"""open_clip's mixture syntax (`data.mixture_syntax`) and its start-up checks in `DataConfig`: one
factor per `::` source, positive numbers, webdataset factors only with resampling."""

import pytest

from cliplab.data.config import DataConfig
from cliplab.data.mixture_syntax import parse_factors, split_sources


def test_sources_and_factors_in_open_clips_syntax():
    assert split_sources("a.tsv::b.tsv") == ["a.tsv", "b.tsv"] and split_sources("a.tsv") == ["a.tsv"]
    assert parse_factors("1::4") == [1.0, 4.0] and parse_factors([0.5, 2]) == [0.5, 2.0]


@pytest.mark.parametrize("value", ["1::x", "1::0", "-1", [1, "2"], [True], [], "1::inf"])
def test_factors_that_are_not_positive_numbers_are_refused(value):
    with pytest.raises(ValueError, match="train_data_upsampling_factors must"):
        parse_factors(value)


def test_the_config_normalises_the_factors_and_checks_their_count():
    config = DataConfig(dataset_type="csv", train_data="a.tsv::b.tsv", train_data_upsampling_factors="1::4")
    assert config.train_data_upsampling_factors == [1.0, 4.0]
    with pytest.raises(ValueError, match=r"holds 3 factors for the 2 sources of train_data 'a.tsv::b.tsv': give one "
                                         r"per '::'-separated source"):
        DataConfig(dataset_type="csv", train_data="a.tsv::b.tsv", train_data_upsampling_factors="1::4::2")
    with pytest.raises(ValueError, match="holds 2 factors for the 1 source of train_data"):
        DataConfig(dataset_type="parquet", train_data="a.parquet", train_data_upsampling_factors=[1, 2])


def test_webdataset_factors_need_resampling_and_fashion_mnist_has_no_sources():
    with pytest.raises(ValueError, match=r"add dataset_resampled \(--dataset-resampled\), as open_clip requires"):
        DataConfig(dataset_type="webdataset", train_data="a.tar::b.tar", train_data_upsampling_factors="1::2")
    assert DataConfig(dataset_type="webdataset", train_data="a.tar::b.tar", train_data_upsampling_factors="1::2",
                      dataset_resampled=True).train_data_upsampling_factors == [1.0, 2.0]
    with pytest.raises(ValueError, match="which dataset_type 'fashion-mnist' does not read as a mixture"):
        DataConfig(train_data_upsampling_factors="1")
