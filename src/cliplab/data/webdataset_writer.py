"""Writing webdataset tar shards in img2dataset layout, from a map-style dataset.

Each sample becomes `KEY.EXT` (the image: the original file's bytes where the dataset is a
manifest of jpg/png/webp files, else PNG), `KEY.txt` (caption) and `KEY.json` (`sample_id`,
`label`, `caption`, `source`), KEY being the 9-digit dataset index. Shards are named `PREFIX-000000.tar`, ... and written under a temporary name, renamed when complete.
Bad samples are skipped and reported, as in training. `PREFIX-info.json` records the brace
pattern, the shards with their sample counts (`shard_paths`, `shard_num_samples`) and the totals:
a training run reads its epoch size from it (`webdataset_counts.py`).
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from cliplab.data.csv_dataset import CsvDataset
from cliplab.data.samples import BadSampleError, MapDataset
from cliplab.errors import InvalidInputError

_PASSTHROUGH_SUFFIXES = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".webp": "webp"}


@dataclass(frozen=True)
class ShardRecord:
    """One sample as stored in a shard: encoded image bytes and extension, caption, ids."""

    key: str
    image_bytes: bytes
    image_ext: str
    caption: str
    label: int
    sample_id: int
    source: str


@dataclass
class ShardWriteReport:
    """What `write_shards` wrote: `pattern` is the brace pattern naming all shards,
    `shard_num_samples[i]` the samples in `shard_paths[i]`."""

    pattern: str
    shard_paths: list[str]
    shard_num_samples: list[int]
    num_samples: int
    skipped: int
    skipped_examples: list[str] = field(default_factory=list)


def dataset_records(dataset: MapDataset, *, epoch: int = 0,
                    indices: range | None = None) -> Iterator[ShardRecord | BadSampleError]:
    """Records of `dataset` items in `indices` (default all), or the BadSampleError of a bad one.

    The caption is the one the dataset gives in `epoch` (for Fashion-MNIST: one caption per
    sample; training on shards then sees that caption every epoch); a sample with several captions
    (`caption_lists`) keeps them all, as the JSON list its `.txt` holds.
    """
    for index in indices if indices is not None else range(len(dataset)):
        try:
            raw = dataset.read(index, epoch=epoch)
        except BadSampleError as error:
            yield error
            continue
        if not raw.caption.strip():
            yield BadSampleError(raw.source, "empty caption")
            continue
        image_bytes, image_ext = _original_bytes(dataset, index)
        if image_bytes is None:
            buffer = io.BytesIO()
            raw.image.save(buffer, format="PNG")
            image_bytes, image_ext = buffer.getvalue(), "png"
        caption = raw.caption if len(raw.captions) == 1 else json.dumps(list(raw.captions), ensure_ascii=False)
        yield ShardRecord(key=f"{index:09d}", image_bytes=image_bytes, image_ext=image_ext,
                          caption=caption, label=raw.label, sample_id=index, source=raw.source)


def _original_bytes(dataset: MapDataset, index: int) -> tuple[bytes | None, str]:
    """A manifest's image file as is (already decoded once, so known good), avoiding re-encoding."""
    if isinstance(dataset, CsvDataset):
        path = dataset.image_paths[index]
        ext = _PASSTHROUGH_SUFFIXES.get(path.suffix.lower())
        if ext is not None:
            return path.read_bytes(), ext
    return None, ""


def write_shards(records: Iterator[ShardRecord | BadSampleError], *, out_dir: str | Path,
                 prefix: str, samples_per_shard: int,
                 on_shard_written: Callable[[str, int], None] | None = None) -> ShardWriteReport:
    """Write `records` into shards of `samples_per_shard` samples under `out_dir`.

    Bad records are counted in the report, not written. `on_shard_written(path, samples_so_far)`
    is called after each shard (for progress output).
    """
    import webdataset as wds  # imported where shards are written, so cliplab imports without it

    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shard_paths: list[str] = []
    shard_num_samples: list[int] = []
    skipped_examples: list[str] = []
    num_samples = 0
    writer, temporary, in_shard = None, None, 0

    def close_shard() -> None:
        nonlocal writer, in_shard
        writer.close()
        final = out_dir / f"{prefix}-{len(shard_paths):06d}.tar"
        os.replace(temporary, final)
        shard_paths.append(str(final))
        shard_num_samples.append(in_shard)
        writer, in_shard = None, 0
        if on_shard_written is not None:
            on_shard_written(str(final), num_samples)

    for record in records:
        if isinstance(record, BadSampleError):
            skipped_examples.append(str(record))
            continue
        if writer is None:
            temporary = out_dir / f".{prefix}-{len(shard_paths):06d}.tar.part"
            writer = wds.TarWriter(str(temporary), encoder=False)
        metadata = {"sample_id": record.sample_id, "label": record.label,
                    "caption": record.caption, "source": record.source}
        sample = {"__key__": record.key, record.image_ext: record.image_bytes,
                  "txt": record.caption.encode("utf-8"),
                  "json": json.dumps(metadata).encode("utf-8")}
        writer.write(sample)
        num_samples += 1
        in_shard += 1
        if in_shard == samples_per_shard:
            close_shard()
    if writer is not None:
        close_shard()
    if not shard_paths:
        raise InvalidInputError(f"no shard written to {out_dir}: all {len(skipped_examples)} samples were "
                         "bad" + (f", e.g. {skipped_examples[:3]}" if skipped_examples else ""))
    last = len(shard_paths) - 1
    pattern = (shard_paths[0] if last == 0 else
               str(out_dir / f"{prefix}-{{{0:06d}..{last:06d}}}.tar"))
    report = ShardWriteReport(pattern=pattern, shard_paths=shard_paths,
                              shard_num_samples=shard_num_samples, num_samples=num_samples,
                              skipped=len(skipped_examples), skipped_examples=skipped_examples)
    info = {key: value for key, value in asdict(report).items() if key != "skipped_examples"}
    info["skipped_examples"] = skipped_examples[:20]
    (out_dir / f"{prefix}-info.json").write_text(json.dumps(info, indent=2) + "\n")
    return report
