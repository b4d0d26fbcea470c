"""Source "parquet": image-caption pairs in parquet files (`data.parquet_dataset`: img2dataset's
output, Hugging Face hub datasets); needs pyarrow, imported when the data is read. As a benchmark
dataset a `.parquet` file or a directory of `{split}.parquet` (`data.benchmark.parquet_table`). A
caption column may hold lists of captions; training locations joined by `::` are a mixture."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

from cliplab.data.mixture_syntax import split_sources
from cliplab.data.sources.spec import DataSource, MapStyle, Mixing, layout_form

if TYPE_CHECKING:
    from cliplab.data.config import DataConfig
    from cliplab.data.parquet_dataset import ParquetDataset


def open_split(config: DataConfig, train: bool, fetch=None) -> ParquetDataset:
    from cliplab.data.parquet_dataset import ParquetDataset

    return ParquetDataset(config.train_data if train else config.val_data, image_key=config.parquet_image_key,
                          caption_key=config.parquet_caption_key, label_key=config.parquet_label_key,
                          caption_seed=config.caption_seed)


def captions(config: DataConfig) -> Iterator[str]:
    """The caption column (each caption of a list), one row group at a time, location after location
    of a mixture."""
    from cliplab.data.parquet_dataset import parquet_captions

    for location in split_sources(config.train_data):
        yield from parquet_captions(location, caption_key=config.parquet_caption_key,
                                    image_key=config.parquet_image_key)


SOURCE = DataSource(
    name="parquet", title="parquet", summary="image bytes and captions in parquet files (img2dataset, Hugging Face datasets)",
    location="a parquet file, a directory of them, or a glob",
    map_style=MapStyle(open=open_split), captions=captions,
    mixing=Mixing(), caption_lists="a list column (`parquet_caption_key`)",
    benchmark=layout_form("parquet_table", "a .parquet file (or a directory of {split}.parquet)", takes_keys=True),
)
