"""Writing a split in CLIP_benchmark's webdataset layout (`wds_layout.py` reads it back; so does
CLIP_benchmark's `wds/` loader).

`DIR/{split}/0.tar ...` with samples `s0000000.png` (lossless), `.cls` (the label) and `.txt` (the
captions, one per line), `DIR/{split}/nshards.txt`, and beside the splits `classnames.txt` and
`zeroshot_classification_templates.txt` (templates with `{c}`). A split directory that exists is
never written into, and a class-names or templates file that exists must say what would be written
(writing the train split after the test split, into the same directory, is the usual case).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from cliplab.data.benchmark.class_names import CLASSNAMES_FILE, TEMPLATES_FILE
from cliplab.data.benchmark.dataset import BenchmarkSplit
from cliplab.data.benchmark.wds_layout import NSHARDS_FILE
from cliplab.errors import InvalidInputError


@dataclass(frozen=True)
class WrittenSplit:
    directory: Path
    shards: tuple[Path, ...]
    num_samples: int


def clip_benchmark_template(template: str) -> str:
    """A cliplab template ('a photo of the {}.') in CLIP_benchmark's spelling ('a photo of the {c}.')."""
    return template.replace("{}", "{c}")


def _write_list_file(path: Path, values: Sequence[str]) -> None:
    text = "".join(f"{value}\n" for value in values)
    if path.exists():
        if path.read_text(encoding="utf-8") != text:
            raise InvalidInputError(f"{path} exists and lists something else; write into another directory")
        return
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_clip_benchmark_split(split: BenchmarkSplit, out_dir: str | Path, *, classnames: Sequence[str] | None,
                               templates: Sequence[str] | None, samples_per_shard: int, max_samples: int | None = None,
                               on_shard_written: Callable[[Path, int], None] | None = None) -> WrittenSplit:
    """Write `split` (its first `max_samples` images, None: all) under `out_dir` (layout: module
    docstring)."""
    import webdataset as wds  # imported where shards are written, so cliplab imports without it

    if samples_per_shard < 1:
        raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
    out_dir = Path(out_dir)
    split_dir = out_dir / split.name
    if split_dir.exists():
        raise InvalidInputError(f"{split_dir} exists already; remove it or write into another directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    if classnames is not None:
        _write_list_file(out_dir / CLASSNAMES_FILE, classnames)
    if templates is not None:
        _write_list_file(out_dir / TEMPLATES_FILE, [clip_benchmark_template(template) for template in templates])
    staging = out_dir / f".{split.name}.part"
    staging.mkdir(exist_ok=True)
    count = len(split) if max_samples is None else min(max_samples, len(split))
    shards = []
    for start in range(0, count, samples_per_shard):
        shard = staging / f"{len(shards)}.tar"
        with wds.TarWriter(str(shard), encoder=False) as writer:
            for index in range(start, min(start + samples_per_shard, count)):
                buffer = io.BytesIO()
                split.images.read(index).save(buffer, format="PNG")
                sample = {"__key__": f"s{index:07d}", "png": buffer.getvalue()}
                if split.labels is not None:
                    sample["cls"] = str(split.labels[index]).encode("utf-8")
                if split.captions is not None:
                    sample["txt"] = "\n".join(split.captions[index]).encode("utf-8")
                writer.write(sample)
        shards.append(shard)
        if on_shard_written is not None:
            on_shard_written(split_dir / shard.name, min(start + samples_per_shard, count))
    (staging / NSHARDS_FILE).write_text(f"{len(shards)}\n", encoding="utf-8")
    os.replace(staging, split_dir)
    return WrittenSplit(split_dir, tuple(split_dir / shard.name for shard in shards), count)
