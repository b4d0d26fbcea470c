"""Source "webdataset": tar shards of image-caption samples, streamed (`data.webdataset_source`,
written by `data.webdataset_writer`, counted by `data.webdataset_counts`); as a benchmark dataset CLIP_benchmark's
layout, a directory of `{split}/*.tar` shards (`data.benchmark.wds_layout`). A sample's captions
are its `.txt`, or a key of its `.json` (`wds_caption_key`: one caption or a list); shard patterns
joined by `::` are one list of shards, drawn with their pattern's weight when
train_data_upsampling_factors are given (`data.mixture.shard_weights`)."""

from __future__ import annotations

import json
import tarfile
from typing import TYPE_CHECKING, Any, Iterator

from cliplab.config_checks import require_together
from cliplab.data.sources.spec import DataSource, IterableStyle, Mixing, layout_form

if TYPE_CHECKING:
    from cliplab.data.batching import Tokenize, Transform
    from cliplab.data.config import DataConfig
    from cliplab.data.webdataset_source import WebDatasetBatches


def batches(config: DataConfig, train: bool, *, transform: Transform, tokenize: Tokenize, batch_size: int,
            rank: int, world_size: int, seed: int = 0, epoch: int = 0, num_batches: int | None = None,
            start_batch: int = 0) -> WebDatasetBatches:
    """This rank's batches of the training shards (epoch `epoch`, from `start_batch`), or of the
    evaluation shards in order."""
    from cliplab.data.webdataset_source import WebDatasetBatches

    if not train:
        return WebDatasetBatches(config.val_data, transform=transform, tokenize=tokenize, batch_size=batch_size,
                                 rank=rank, world_size=world_size, seed=0, epoch=0, num_batches=None,
                                 caption_key=config.wds_caption_key)
    return WebDatasetBatches(config.train_data, transform=transform, tokenize=tokenize, batch_size=batch_size,
                             rank=rank, world_size=world_size, seed=seed, epoch=epoch, num_batches=num_batches,
                             start_batch=start_batch, resampled=config.dataset_resampled,
                             shuffle_buffer=config.shuffle_buffer, caption_key=config.wds_caption_key,
                             caption_seed=config.caption_seed, upsampling_factors=config.train_data_upsampling_factors)


def sample_count(config: DataConfig, train: bool) -> int | None:
    """train_num_samples / val_num_samples, else the count recorded next to the shards (required
    for training)."""
    from cliplab.data.webdataset_counts import count_shard_samples

    if train:
        if config.train_num_samples is not None:
            return config.train_num_samples
        return count_shard_samples(config.train_data).required(flag="--train-num-samples",
                                                               key="data.train_num_samples")
    if config.val_num_samples is not None:
        return config.val_num_samples
    return count_shard_samples(config.val_data).total


def captions(config: DataConfig) -> Iterator[str]:
    """The non-empty captions (stripped) of the shards of `train_data`, shard by shard: the `.txt`
    members, or the `wds_caption_key` of the `.json` ones (each caption of a list); an unreadable
    shard is passed over (training counts it as a skipped item). Only the tar headers and the
    captions are read from local shards; remote ones are streamed."""
    import webdataset as wds

    from cliplab.data.caption_lists import corpus_captions
    from cliplab.data.webdataset_source import expand_shard_urls

    caption_key = config.wds_caption_key
    for url in expand_shard_urls(config.train_data):
        local = "://" not in url and not url.startswith("pipe:")
        try:
            with (tarfile.open(url) if local else
                  tarfile.open(fileobj=wds.gopen(url), mode="r|*")) as shard:
                for member in shard:
                    # webdataset's convention: the extension is what follows the first dot
                    extension = member.name.rsplit("/", 1)[-1].partition(".")[2]
                    if member.isfile() and extension == ("txt" if caption_key is None else "json"):
                        text = shard.extractfile(member).read().decode("utf-8", errors="replace")
                        yield from corpus_captions(text if caption_key is None else _json_field(text, caption_key))
        except (tarfile.TarError, OSError):
            continue


def _json_field(text: str, key: str) -> Any:
    """`key` of the JSON object `text` (None when it is not one or has no such key)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None
    return value.get(key) if isinstance(value, dict) else None


def check_mixture(config: DataConfig) -> None:
    """Weighted shards are drawn with replacement: factors need dataset_resampled (open_clip's rule)."""
    require_together(config.train_data_upsampling_factors is None or config.dataset_resampled, "dataset_resampled",
                     "train_data_upsampling_factors on webdataset shards weigh the shards' draws with replacement: "
                     "add dataset_resampled (--dataset-resampled), as open_clip requires")


def check(location: str) -> None:
    """Every local shard of the pattern exists."""
    from cliplab.data.webdataset_source import expand_shard_urls

    expand_shard_urls(location)


SOURCE = DataSource(
    name="webdataset", title="webdataset", summary="tar shards of image-caption samples, streamed (open_clip's webdataset)",
    location="a brace pattern of tar shards (`dir/train-{000000..000009}.tar`), `::`-joined lists, URLs",
    iterable=IterableStyle(batches=batches, sample_count=sample_count), captions=captions, check=check,
    mixing=Mixing(check=check_mixture, needs="weights need dataset_resampled"),
    caption_lists="a list under `wds_caption_key` in the sample's `.json`",
    benchmark=layout_form("wds_layout", "a directory of {split}/*.tar shards (CLIP_benchmark's)"),
)
