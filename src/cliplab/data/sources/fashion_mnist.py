"""Source "fashion-mnist": the built-in Fashion-MNIST images (`data.fashion_mnist`) with generated
captions; train_data / val_data optionally name the directory holding its idx files, else the cache
(downloaded there unless `fashion_mnist_download` is off). As a benchmark dataset
(`data.benchmark.fashion_mnist_set`) it is found by its name, and zero-shot during training runs
on its test split."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cliplab.data.sources.spec import BenchmarkForm, ClassLabels, DataSource, ImageStatistics, MapStyle

if TYPE_CHECKING:
    from cliplab.data.benchmark.dataset import BenchmarkDataset
    from cliplab.data.config import DataConfig
    from cliplab.data.fashion_mnist import FashionMnistDataset
    from cliplab.data.fashion_mnist_files import Fetcher

NAME = "fashion-mnist"
# The training split's pixel mean and standard deviation, in [0, 1] (grayscale: the same in R, G
# and B), which the tiny model configs normalise with.
FASHION_MNIST_MEAN = (0.286, 0.286, 0.286)
FASHION_MNIST_STD = (0.353, 0.353, 0.353)


def open_split(config: DataConfig, train: bool, fetch: Fetcher) -> FashionMnistDataset:
    """The "train" split (train=True) or the "test" split."""
    from cliplab.data.fashion_mnist import FashionMnistDataset

    location = config.train_data if train else config.val_data
    return FashionMnistDataset(split="train" if train else "test", data_dir=location or config.train_data,
                               caption_seed=config.caption_seed, cache_dir=config.cache_dir,
                               download=config.fashion_mnist_download, fetch=fetch)


def captions(config: DataConfig) -> list[str]:
    """The built-in corpus: every generated caption and every zero-shot prompt."""
    from cliplab.data.fashion_mnist import fashion_mnist_caption_corpus

    return fashion_mnist_caption_corpus()


def zero_shot(config: DataConfig) -> BenchmarkDataset:
    """The benchmark dataset of the run's own Fashion-MNIST files."""
    from cliplab.data.benchmark.fashion_mnist_set import open_dataset

    return open_dataset(data_dir=config.val_data or config.train_data, cache_dir=config.cache_dir,
                        download=config.fashion_mnist_download)


def open_benchmark(location: str, options: Any) -> BenchmarkDataset:
    from cliplab.data.benchmark.fashion_mnist_set import open_dataset

    return open_dataset(data_dir=options.data_dir, download=options.download)


SOURCE = DataSource(
    name=NAME, title="Fashion-MNIST", summary="the built-in Fashion-MNIST (28x28 grayscale clothes) with generated captions",
    location="optionally the directory holding its idx files", built_in=True,
    statistics=ImageStatistics("Fashion-MNIST's grayscale", FASHION_MNIST_MEAN, FASHION_MNIST_STD),
    map_style=MapStyle(open=open_split), captions=captions, zero_shot=zero_shot,
    class_labels=ClassLabels(present=lambda config: True), loader_workers=0,
    benchmark=BenchmarkForm(location=f"the name {NAME}", detect=lambda location: location == NAME,
                            open=open_benchmark),
)
