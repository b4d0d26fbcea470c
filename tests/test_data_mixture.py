"""Mixtures of training sources (`data.mixture`): the concatenated dataset reads each source's own
samples; a weighted pass holds each sample its factor's number of times (fractional parts drawn
without replacement) and with every factor 1 is the single dataset's permutation; the sampler's
global batches over a mixture are the same on 1 and 2 ranks and from any resume point; webdataset
shards are drawn in proportion to their source's factor; the loader and the tokenizer corpus read
`a::b` of csv and parquet."""

from collections import Counter

import numpy as np
import pytest

from cliplab.data.caption_corpus import caption_corpus
from cliplab.data.config import DataConfig
from cliplab.data.csv_dataset import CsvDataset
from cliplab.data.loader import build_train_loader
from cliplab.data.mixture import MixtureDataset, WeightedPasses, shard_weights
from cliplab.data.sampler import ResumableDistributedBatchSampler
from cliplab.data.webdataset_source import WebDatasetBatches
from cliplab.data.webdataset_writer import dataset_records, write_shards

from data_fixtures import first_pixel_transform, length_tokenize, make_manifest, make_parquet


def _relabelled_manifest(directory, count, word):
    """make_manifest's images with captions "{word} i"."""
    make_manifest(directory, count)
    rows = ["filepath\ttitle"] + [f"images/{index}.png\t{word} {index}" for index in range(count)]
    (directory / f"{word}.tsv").write_text("\n".join(rows) + "\n")
    return directory / f"{word}.tsv"


def test_a_mixture_reads_its_sources_one_after_the_other(tmp_path):
    first, second = _relabelled_manifest(tmp_path / "a", 3, "a"), _relabelled_manifest(tmp_path / "b", 5, "b")
    mixture = MixtureDataset([CsvDataset(first), CsvDataset(second)])
    assert len(mixture) == 8 and mixture.sizes == [3, 5]
    assert [mixture.read(index, epoch=0).caption for index in range(8)] == ["a 0", "a 1", "a 2"] + [
        f"b {index}" for index in range(5)]
    with pytest.raises(IndexError):
        mixture.read(8, epoch=0)


def test_a_pass_holds_each_sample_its_factors_number_of_times():
    passes = WeightedPasses((3, 5), (1.0, 4.0))
    order = passes.order(np.random.default_rng(0))
    assert passes.size == len(order) == 3 + 20
    assert Counter(order.tolist()) == {**{index: 1 for index in range(3)}, **{index: 4 for index in range(3, 8)}}


def test_fractional_factors_draw_the_rest_without_replacement():
    passes = WeightedPasses((10, 4), (0.5, 2.25))
    order = passes.order(np.random.default_rng(1))
    counts = Counter(order.tolist())
    assert passes.size == len(order) == 5 + 8 + 1
    assert sum(counts[index] for index in range(10)) == 5 and all(counts[index] <= 1 for index in range(10))
    assert sorted(counts[index] for index in range(10, 14)) == [2, 2, 2, 3]
    with pytest.raises(ValueError, match="draw no sample"):
        WeightedPasses((1,), (0.2,))


def test_factors_of_one_give_the_single_datasets_permutation():
    order = WeightedPasses((4, 7), (1.0, 1.0)).order(np.random.default_rng(9))
    assert order.tolist() == np.random.default_rng(9).permutation(11).tolist()


def _sampler(world_size, rank, batch_size, start_batch=0):
    return ResumableDistributedBatchSampler(dataset_size=8, batch_size=batch_size, rank=rank, world_size=world_size,
                                            seed=3, epoch=2, start_batch=start_batch,
                                            passes=WeightedPasses((3, 5), (1.0, 2.5)))


def test_the_global_batches_of_a_mixture_are_the_same_on_any_world_size_and_resume_point():
    one = _sampler(1, 0, 4)
    assert one.num_samples == 3 + 10 + 2 and one.num_batches == 4  # round(0.5 * 5): half to even
    two = [_sampler(2, rank, 2) for rank in range(2)]
    for batch in range(one.num_batches):
        assert one.batch_indices(batch) == two[0].batch_indices(batch) + two[1].batch_indices(batch)
    assert list(_sampler(1, 0, 4, start_batch=2)) == [one.batch_indices(2), one.batch_indices(3)]


def test_webdataset_shards_are_drawn_by_their_sources_factor(tmp_path):
    patterns = []
    for word, count in (("a", 8), ("b", 8)):
        manifest = _relabelled_manifest(tmp_path / word, count, word)
        patterns.append(write_shards(dataset_records(CsvDataset(manifest)), out_dir=tmp_path / f"{word}-shards",
                                     prefix=word, samples_per_shard=4).pattern)
    pattern = "::".join(patterns)
    urls, weights = shard_weights(pattern, [1, 4])
    assert [url.split("/")[-2] for url in urls] == ["a-shards"] * 2 + ["b-shards"] * 2 and weights == [1, 1, 4, 4]
    batches = WebDatasetBatches(pattern, transform=first_pixel_transform, tokenize=length_tokenize, batch_size=4,
                                rank=0, world_size=1, seed=0, epoch=0, num_batches=100, resampled=True,
                                shuffle_buffer=1, upsampling_factors=[1, 4])
    words = Counter(caption.split()[0] for batch in batches for caption in batch["captions"])
    assert sum(words.values()) == 400 and 0.7 < words["b"] / 400 < 0.9  # expected 0.8: 100 shard draws


def test_the_loader_mixes_csv_and_parquet_sources(tmp_path):
    first, second = _relabelled_manifest(tmp_path / "a", 4, "a"), _relabelled_manifest(tmp_path / "b", 6, "b")
    config = DataConfig(dataset_type="csv", train_data=f"{first}::{second}", train_data_upsampling_factors="2::1",
                        workers=0)
    loader, num_batches = build_train_loader(config, transform=first_pixel_transform, tokenize=length_tokenize,
                                             batch_size=7, rank=0, world_size=1, seed=0, epoch=0)
    captions = [caption for batch in loader for caption in batch["captions"]]
    assert num_batches == 2 and len(captions) == 14  # one pass: 2 x 4 + 6 samples
    assert Counter(caption.split()[0] for caption in captions) == {"a": 8, "b": 6}
    parquet = [make_parquet(tmp_path / f"{name}.parquet", 3, first=first_value)
               for name, first_value in (("p", 0), ("q", 10))]
    config = DataConfig(dataset_type="parquet", train_data="::".join(map(str, parquet)), workers=0)
    loader, _ = build_train_loader(config, transform=first_pixel_transform, tokenize=length_tokenize, batch_size=6,
                                   rank=0, world_size=1, seed=0, epoch=0)
    assert sorted(caption for batch in loader for caption in batch["captions"]) == [
        f"caption {value}" for value in (0, 1, 10, 11, 12, 2)]
    assert caption_corpus(config) == [f"caption {value}" for value in (0, 1, 2, 10, 11, 12)]
