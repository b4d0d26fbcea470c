"""Batches from webdataset tar shards in img2dataset layout, read with the `webdataset` library.

A sample is the files sharing a key in a shard: an image (`.jpg`, `.jpeg`, `.png` or `.webp`), its
caption (`.txt`, or with `caption_key` (--wds-caption-key) that key of its `.json`; one caption or a
list of them, `caption_lists`), and optionally `.json` metadata (`sample_id`, `label`) and a `.cls`
label. A sample with several captions trains on one per epoch, chosen by a hash of (caption seed,
epoch, the sample's key), and is evaluated on all of them.

Training: the shard list is shuffled per (seed, epoch) and dealt out to the rank x worker slots, so
the slots hold disjoint shards that together cover the list; with `resampled`, each slot instead
draws shards with replacement (open_clip's `--dataset-resampled`), each with its source's upsampling
factor as weight for a mixture of sources (`data.mixture.shard_weights`). Every slot cycles its stream
(reshuffling each pass) through a shuffle buffer and stops after its share of the rank's
`num_batches`, so all ranks yield the same number of full batches: an epoch is a declared number of
samples (`--train-num-samples`), not a pass over the shards. Bad samples, and unreadable shards, are
counted and skipped; the stream simply supplies the next sample, so batches stay full.

Resuming mid-epoch is approximate, by design: the remaining batches are drawn from a stream seeded
with the resume point, not the exact batches an uninterrupted run would have seen, so the
interrupted epoch may repeat or miss samples (exact resumption needs a map-style dataset). Its
batch count, and every later epoch, are those of an uninterrupted run (docs/data.md).

Evaluation: each slot reads its shards once, in order; the last batch may be short.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Iterator, Sequence

from torch.utils.data import IterableDataset, get_worker_info

from cliplab.data.batching import (REPLACEMENTS_PER_SLOT, PreparedSample, Tokenize, Transform,
                                   assemble_batch)
from cliplab.data.caption_lists import drawn_caption, sample_captions, text_key
from cliplab.data.images import decode_rgb_image
from cliplab.data.samples import BadSampleError, RawSample, TooManyBadSamplesError
from cliplab.data.seeding import mix_seed, preserved_global_rngs, seed_global_rngs
from cliplab.errors import InvalidInputError, MissingInputError

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")
_SHARD_ORDER_SALT = 0x5A4D


def expand_shard_urls(urls: str | Sequence[str]) -> list[str]:
    """Expand brace patterns (`dir/train-{000000..000009}.tar`) and `::`-joined lists.

    Local paths are checked at once; raises FileNotFoundError naming the missing shards.
    """
    import webdataset as wds  # imported where shards are read, so cliplab imports without it

    expanded = wds.shardlists.expand_urls(urls) if isinstance(urls, str) else [
        url for pattern in urls for url in wds.shardlists.expand_urls(pattern)]
    if not expanded:
        raise InvalidInputError(f"shard pattern {urls!r} names no shards")
    local = [url for url in expanded if "://" not in url and not url.startswith("pipe:")]
    missing = [url for url in local if not Path(url).is_file()]
    if missing:
        raise MissingInputError(f"{len(missing)} of {len(expanded)} shards in {urls!r} do not "
                                f"exist, e.g. {missing[:3]}")
    return expanded


def decode_sample(sample: dict, *, caption_key: str | None = None, caption_seed: int = 0,
                  epoch: int = 0) -> tuple[RawSample, int]:
    """(RawSample with an RGB image, sample id) from a webdataset sample dict of bytes.

    The captions are the `.txt`'s, or the `.json`'s `caption_key`; the one of `epoch` is drawn by
    (caption_seed, epoch, the sample's key). The sample id is the `.json`'s `sample_id`, else the key
    where it is a number, else -1. Raises BadSampleError for a missing or undecodable image, an empty
    caption or list of captions, or a `.json` without `caption_key`.
    """
    key = str(sample.get("__key__", ""))
    source = f"{sample.get('__url__', '?')}:{key or '?'}"
    image_bytes = next((sample[ext] for ext in IMAGE_EXTENSIONS if ext in sample), None)
    if image_bytes is None:
        raise BadSampleError(source, f"no image file (looked for .{', .'.join(IMAGE_EXTENSIONS)})")
    try:
        metadata = json.loads(sample["json"]) if "json" in sample else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadSampleError(source, f"invalid .json ({error})") from None
    if caption_key is None:
        field = sample.get("txt", b"").decode("utf-8", errors="replace")
        if not field.strip():
            raise BadSampleError(source, "empty or missing caption (.txt)")
    elif not isinstance(metadata, dict) or caption_key not in metadata:
        raise BadSampleError(source, f"no key {caption_key!r} in its .json (--wds-caption-key)")
    else:
        field = metadata[caption_key]
    captions = sample_captions(field, source=source)
    rgb = decode_rgb_image(io.BytesIO(image_bytes), source)
    label = int(sample["cls"]) if "cls" in sample else int(metadata.get("label", -1))
    sample_id = int(metadata.get("sample_id", int(key) if key.isdigit() else -1))
    caption = drawn_caption(captions, seed=caption_seed, epoch=epoch, key=text_key(key))
    return RawSample(image=rgb, caption=caption, label=label, source=source, captions=captions), sample_id


class WebDatasetBatches(IterableDataset):
    """Iterable of assembled batches (the dict of `batching.assemble_batch`) from tar shards.

    Training (`num_batches` given): yields `num_batches - start_batch` full batches per rank, split
    over the DataLoader workers. Evaluation (`num_batches=None`): one ordered pass per rank.
    """

    def __init__(self, urls: str | Sequence[str], *, transform: Transform, tokenize: Tokenize,
                 batch_size: int, rank: int, world_size: int, seed: int, epoch: int,
                 num_batches: int | None, start_batch: int = 0, resampled: bool = False,
                 shuffle_buffer: int = 1000, caption_key: str | None = None, caption_seed: int = 0,
                 upsampling_factors: Sequence[float] | None = None):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, "
                             f"world_size={world_size}")
        if upsampling_factors is None:
            self.urls, self.weights = expand_shard_urls(urls), None
        else:
            from cliplab.data.mixture import shard_weights

            self.urls, self.weights = shard_weights(urls, upsampling_factors)
        self.pattern = urls
        self.transform = transform
        self.tokenize = tokenize
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.epoch = epoch
        self.num_batches = num_batches
        self.start_batch = start_batch
        self.resampled = resampled
        self.shuffle_buffer = shuffle_buffer
        self.caption_key = caption_key
        self.caption_seed = caption_seed
        self.training = num_batches is not None

    def slot_shards(self, worker_id: int, num_workers: int) -> list[str]:
        """The shards of (this rank, worker): disjoint across slots, together all the shards."""
        order = list(self.urls)
        if self.training:
            random.Random(mix_seed(self.seed, self.epoch, _SHARD_ORDER_SALT)).shuffle(order)
        slots = self.world_size * num_workers
        return order[self.rank * num_workers + worker_id::slots]

    def _shard_stream(self, worker_id: int, num_workers: int, progress: list[int]) -> Iterator[dict]:
        rng = random.Random(mix_seed(self.seed, self.epoch, self.start_batch, self.rank, worker_id))
        if self.training and self.resampled:
            while True:
                before = progress[0]
                for _ in range(len(self.urls)):
                    url = rng.choice(self.urls) if self.weights is None else rng.choices(self.urls, self.weights)[0]
                    yield {"url": url}
                self._check_progress(before, progress)
        shards = self.slot_shards(worker_id, num_workers)
        if not self.training:
            yield from ({"url": url} for url in shards)
            return
        if not shards:
            raise InvalidInputError(
                f"{len(self.urls)} shards cannot feed {self.world_size} ranks x {num_workers} "
                "workers without resampling: use at least as many shards as ranks x workers, "
                "fewer workers, or dataset_resampled")
        while True:
            before = progress[0]
            rng.shuffle(shards)
            yield from ({"url": url} for url in shards)
            self._check_progress(before, progress)

    def _check_progress(self, samples_before: int, progress: list[int]) -> None:
        if progress[0] == samples_before:
            raise InvalidInputError(f"a full pass over the shards of {self.pattern!r} produced no samples")

    def __iter__(self) -> Iterator[dict]:
        import webdataset as wds

        worker = get_worker_info()
        worker_id, num_workers = (worker.id, worker.num_workers) if worker else (0, 1)
        quota = None
        if self.training:
            remaining = self.num_batches - self.start_batch
            quota = remaining // num_workers + (worker_id < remaining % num_workers)
            if quota == 0:
                return
        shard_errors: list[str] = []

        def record_shard_error(error: Exception) -> bool:
            shard_errors.append(f"{error.args[-1] if error.args else '?'}: unreadable shard "
                                f"({type(error).__name__}: {error.args[0] if error.args else ''})")
            return True

        progress = [0]
        samples = _counted(wds.tarfile_samples(self._shard_stream(worker_id, num_workers, progress),
                                               handler=record_shard_error), progress)
        if self.training and self.shuffle_buffer > 1:
            shuffle_rng = random.Random(mix_seed(self.seed, self.epoch, self.start_batch, self.rank,
                                                 worker_id, 1))
            samples = wds.shuffle(self.shuffle_buffer, initial=self.shuffle_buffer,
                                  rng=shuffle_rng)(samples)
        yield from self._batches(samples, shard_errors, worker_id, quota)

    def _batches(self, samples: Iterator[dict], shard_errors: list[str], worker_id: int,
                 quota: int | None) -> Iterator[dict]:
        decoded: list[tuple[int, RawSample, int]] = []  # (stream position, sample, sample id)
        skipped_examples: list[str] = []
        produced = 0
        for position, sample in enumerate(samples):
            try:
                raw, sample_id = decode_sample(sample, caption_key=self.caption_key, caption_seed=self.caption_seed,
                                               epoch=self.epoch)
                decoded.append((position, raw, sample_id))
            except BadSampleError as error:
                skipped_examples.append(str(error))
            skipped_examples.extend(shard_errors)
            shard_errors.clear()
            if len(skipped_examples) > REPLACEMENTS_PER_SLOT * self.batch_size:
                raise TooManyBadSamplesError(
                    f"{len(skipped_examples)} bad samples or shards while filling one batch of "
                    f"{self.batch_size} from {self.pattern!r}; examples:\n  "
                    + "\n  ".join(skipped_examples[:5]))
            if len(decoded) == self.batch_size:
                yield self._assemble(decoded, skipped_examples, worker_id)
                decoded, skipped_examples = [], []
                produced += 1
                if quota is not None and produced == quota:
                    return
        skipped_examples.extend(shard_errors)
        if decoded or skipped_examples:
            yield self._assemble(decoded, skipped_examples, worker_id)

    def _assemble(self, decoded: list[tuple[int, RawSample, int]], skipped_examples: list[str],
                  worker_id: int) -> dict:
        prepared = []
        with preserved_global_rngs():
            for position, raw, sample_id in decoded:
                seed_global_rngs(mix_seed(self.seed, self.epoch, self.start_batch, self.rank,
                                          worker_id, position))
                prepared.append(PreparedSample(image=self.transform(raw.image), caption=raw.caption,
                                               label=raw.label, sample_id=sample_id, captions=raw.captions))
        return assemble_batch(prepared, tokenize=self.tokenize, skipped=len(skipped_examples),
                              skipped_examples=skipped_examples, caption_lists=not self.training)


def _counted(samples: Iterator[dict], progress: list[int]) -> Iterator[dict]:
    """Counts samples as they leave the tar reader (before the shuffle buffer holds them back)."""
    for sample in samples:
        progress[0] += 1
        yield sample
