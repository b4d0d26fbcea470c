"""How many samples webdataset shards hold, read from the files written beside them.

A tar stream does not say how long it is, so the count comes from what wrote the shards:

1. `cliplab shards` writes `PREFIX-info.json` next to `PREFIX-000000.tar`, ...: its
   `shard_num_samples` gives each shard's count (an info file from before that field existed
   gives only the total `num_samples`, which is used when the pattern names all of its shards);
2. img2dataset writes `00000_stats.json` next to `00000.tar`: its `successes` is the number of
   samples the tar holds;
3. img2dataset also writes `00000.parquet` next to `00000.tar`, one row per attempted sample:
   the rows whose `status` is `"success"` are the samples in the tar (read when the stats file is
   gone; only the `status` column is read).

Each shard's count is looked up in that order; the pattern's count is their sum, or None when a
shard has none (or is not a local file). `train_num_samples` / `val_num_samples` always win.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cliplab.data.webdataset_source import expand_shard_urls
from cliplab.errors import UserError

_CLIPLAB_SHARD_NAME = re.compile(r"^(?P<prefix>.+)-\d{6}\.tar$")


@dataclass(frozen=True)
class ShardSampleCount:
    """The samples of a shard pattern: `total` (None when a shard has no count), and the shards
    that have none."""

    pattern: str
    num_shards: int
    total: int | None
    uncounted: list[str]

    def required(self, *, flag: str, key: str) -> int:
        """`total`, or a UserError naming the pattern and the three ways to give the count."""
        if self.total is not None:
            return self.total
        raise UserError(
            f"webdataset shards {self.pattern!r}: cannot tell how many samples they hold "
            f"({len(self.uncounted)} of {self.num_shards} shards have no count next to them, e.g. "
            f"{self.uncounted[0]}). Either: 1. pass {flag} N ({key}); 2. write the shards with "
            "`cliplab shards`, which records the counts in PREFIX-info.json next to them; or "
            "3. keep img2dataset's NNNNN_stats.json (field 'successes') or NNNNN.parquet (column "
            "'status') next to each NNNNN.tar")


def count_shard_samples(urls: str | Sequence[str]) -> ShardSampleCount:
    """How many samples the shards of `urls` (a brace pattern, `::`-joined or a list) hold."""
    expanded = expand_shard_urls(urls)
    pattern = urls if isinstance(urls, str) else "::".join(urls)
    total, uncounted = 0, []
    by_info: dict[Path, list[Path]] = {}  # a cliplab info file -> the shards it may count
    for url in expanded:
        if "://" in url or url.startswith("pipe:"):
            uncounted.append(url)
            continue
        shard = Path(url)
        match = _CLIPLAB_SHARD_NAME.match(shard.name)
        info = shard.parent / f"{match['prefix']}-info.json" if match else None
        if info is not None and info.is_file():
            by_info.setdefault(info, []).append(shard)
            continue
        count = _img2dataset_count(shard)
        if count is None:
            uncounted.append(url)
        else:
            total += count
    for info, shards in by_info.items():
        count = _cliplab_info_count(info, shards)
        if count is None:
            uncounted.extend(str(shard) for shard in shards)
        else:
            total += count
    return ShardSampleCount(pattern=pattern, num_shards=len(expanded),
                            total=None if uncounted else total, uncounted=uncounted)


def _read_json(path: Path) -> dict:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: cannot read it as JSON ({error})") from None
    if not isinstance(content, dict):
        raise UserError(f"{path}: expected a JSON object, found {type(content).__name__}")
    return content


def _count_field(content: dict, key: str, path: Path) -> int:
    value = content.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise UserError(f"{path}: expected a sample count >= 0 in field {key!r}, found {value!r}")
    return value


def _cliplab_info_count(info: Path, shards: list[Path]) -> int | None:
    """The samples of `shards` according to a `cliplab shards` info file; None when it cannot say
    (a shard it does not list, or an older file without per-shard counts that lists others too)."""
    content = _read_json(info)
    listed = [Path(str(shard)).name for shard in content.get("shard_paths", [])]
    names = [shard.name for shard in shards]
    if "shard_num_samples" not in content:
        return _count_field(content, "num_samples", info) if sorted(names) == sorted(listed) else None
    per_shard = content["shard_num_samples"]
    if not isinstance(per_shard, list) or len(per_shard) != len(listed):
        raise UserError(f"{info}: expected 'shard_num_samples' to hold one count per entry of "
                        f"'shard_paths' ({len(listed)}), found {per_shard!r}")
    by_name = dict(zip(listed, per_shard))
    if any(name not in by_name for name in names):
        return None
    return sum(_count_field(by_name, name, info) for name in names)


def _img2dataset_count(shard: Path) -> int | None:
    """The samples of an img2dataset tar: `STEM_stats.json`'s `successes`, else the rows of
    `STEM.parquet` whose `status` is "success"; None when neither is there."""
    stats = shard.with_name(f"{shard.stem}_stats.json")
    if stats.is_file():
        return _count_field(_read_json(stats), "successes", stats)
    metadata = shard.with_suffix(".parquet")
    if not metadata.is_file():
        return None
    try:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        return None
    try:
        schema = pq.read_schema(metadata)
        if "status" not in schema.names:
            return None
        status = pq.read_table(metadata, columns=["status"]).column("status")
    except OSError as error:
        raise UserError(f"{metadata}: cannot read it as parquet ({error})") from None
    return int(pc.sum(pc.equal(status, "success")).as_py() or 0)
