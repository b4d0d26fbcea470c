"""Writing embeddings to disk: `.npy` arrays, each with its ids beside it, and a Parquet table.

Each item has: id, its row in its modality's array; path, the image file (none for texts); line,
where it was listed (the 1-based line of the --texts file, or of the image's row in a manifest,
the header being line 1; none for the images of a directory); text, the text, or an image's
manifest caption (none when there is none).

`X.npy` gets `X.ids.tsv` beside it: a header `id, path, line, text`, then row i of the array's
ids, tab-separated (an absent value is an empty field; a field holding a tab or a quote is quoted,
as Python's csv module and pandas read it).

Parquet layout (one row per embedded item): modality "image" | "text", id int64, path string, line
int64, text string (the last three null where absent), embedding: fixed-size list of E float32.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cliplab.errors import UserError

IDS_COLUMNS = ("id", "path", "line", "text")


@dataclass(frozen=True)
class EmbeddedItems:
    """embeddings: float32 [N, E] unit rows; paths / lines / texts: N entries each, None where absent
    (see the module docstring)."""

    modality: str
    embeddings: np.ndarray
    paths: tuple[str | None, ...]
    lines: tuple[int | None, ...]
    texts: tuple[str | None, ...]

    def __post_init__(self) -> None:
        count = self.embeddings.shape[0]
        if self.embeddings.ndim != 2 or not len(self.paths) == len(self.lines) == len(self.texts) == count:
            raise ValueError(f"{self.modality}: embeddings [N, E] with N paths, lines and texts expected, got "
                             f"{self.embeddings.shape}, {len(self.paths)} paths, {len(self.lines)} lines, "
                             f"{len(self.texts)} texts")


def npy_paths(out: Path, modalities: list[str]) -> dict[str, Path]:
    """Where each modality's array goes: `out` itself for one modality, `<stem>.<modality>s.npy`
    next to it for two (e.g. emb.npy -> emb.images.npy, emb.texts.npy)."""
    if len(modalities) == 1:
        return {modalities[0]: out}
    return {modality: out.with_name(f"{out.stem}.{modality}s.npy") for modality in modalities}


def ids_path(npy: Path) -> Path:
    """The ids file of an array: emb.npy -> emb.ids.tsv, emb.images.npy -> emb.images.ids.tsv."""
    return npy.with_name(f"{npy.stem}.ids.tsv")


def write_ids(item: EmbeddedItems, path: Path) -> Path:
    """The ids of `item`'s rows as a TSV (layout in the module docstring)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(IDS_COLUMNS)
        for row, (path_value, line, text) in enumerate(zip(item.paths, item.lines, item.texts)):
            writer.writerow([row, path_value, line, text])  # csv writes None as an empty field
    return path


def write_npy(items: list[EmbeddedItems], out: Path) -> list[Path]:
    """Save each modality's float32 array (see `npy_paths`) and its ids file (`ids_path`); returns the
    files written."""
    targets = npy_paths(out, [item.modality for item in items])
    written = []
    for item in items:
        target = targets[item.modality]
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, item.embeddings.astype(np.float32, copy=False))
        written += [target, write_ids(item, ids_path(target))]
    return written


def write_parquet(items: list[EmbeddedItems], out: Path) -> Path:
    """Save all items as one Parquet table (layout in the module docstring); needs pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError("writing Parquet needs pyarrow: pip install 'cliplab[parquet]', or write .npy") from None
    dims = {item.embeddings.shape[1] for item in items}
    if len(dims) != 1:
        raise ValueError(f"all embeddings must share one dimension to share a table, got {sorted(dims)}")
    dim = dims.pop()
    modality, ids, paths, lines, texts, vectors = [], [], [], [], [], []
    for item in items:
        count = item.embeddings.shape[0]
        modality += [item.modality] * count
        ids += list(range(count))
        paths += list(item.paths)
        lines += list(item.lines)
        texts += list(item.texts)
        vectors.append(item.embeddings.astype(np.float32, copy=False).reshape(-1))
    flat = pa.array(np.concatenate(vectors), type=pa.float32())
    table = pa.table({
        "modality": pa.array(modality, type=pa.string()),
        "id": pa.array(ids, type=pa.int64()),
        "path": pa.array(paths, type=pa.string()),
        "line": pa.array(lines, type=pa.int64()),
        "text": pa.array(texts, type=pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return out
