"""Writing embeddings to disk: `.npy` arrays, and a Parquet table carrying ids, paths and texts.

Parquet layout (one row per embedded item): modality "image" | "text"; id: int64 row index within
its modality (= the row of the matching .npy); path: image path (null for texts); text: the text,
or the manifest caption of an image (null when there is none); embedding: fixed-size list of E
float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cliplab.errors import UserError


@dataclass(frozen=True)
class EmbeddedItems:
    """embeddings: float32 [N, E] unit rows; paths / texts: N entries each, None where absent."""

    modality: str
    embeddings: np.ndarray
    paths: tuple[str | None, ...]
    texts: tuple[str | None, ...]

    def __post_init__(self) -> None:
        count = self.embeddings.shape[0]
        if self.embeddings.ndim != 2 or len(self.paths) != count or len(self.texts) != count:
            raise ValueError(f"{self.modality}: embeddings [N, E] with N paths and N texts expected, got "
                             f"{self.embeddings.shape}, {len(self.paths)} paths, {len(self.texts)} texts")


def npy_paths(out: Path, modalities: list[str]) -> dict[str, Path]:
    """Where each modality's array goes: `out` itself for one modality, `<stem>.<modality>s.npy`
    next to it for two (e.g. emb.npy -> emb.images.npy, emb.texts.npy)."""
    if len(modalities) == 1:
        return {modalities[0]: out}
    return {modality: out.with_name(f"{out.stem}.{modality}s.npy") for modality in modalities}


def write_npy(items: list[EmbeddedItems], out: Path) -> list[Path]:
    """Save each modality's float32 array (see `npy_paths`); returns the files written."""
    targets = npy_paths(out, [item.modality for item in items])
    written = []
    for item in items:
        target = targets[item.modality]
        target.parent.mkdir(parents=True, exist_ok=True)
        np.save(target, item.embeddings.astype(np.float32, copy=False))
        written.append(target)
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
    modality, ids, paths, texts, vectors = [], [], [], [], []
    for item in items:
        count = item.embeddings.shape[0]
        modality += [item.modality] * count
        ids += list(range(count))
        paths += list(item.paths)
        texts += list(item.texts)
        vectors.append(item.embeddings.astype(np.float32, copy=False).reshape(-1))
    flat = pa.array(np.concatenate(vectors), type=pa.float32())
    table = pa.table({
        "modality": pa.array(modality, type=pa.string()),
        "id": pa.array(ids, type=pa.int64()),
        "path": pa.array(paths, type=pa.string()),
        "text": pa.array(texts, type=pa.string()),
        "embedding": pa.FixedSizeListArray.from_arrays(flat, dim),
    })
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    return out
