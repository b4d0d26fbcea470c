"""CSV/TSV manifests as benchmark datasets: image paths with an integer label, captions, or both.

    FILE.csv | FILE.tsv                              one split, "test"
    DIR/{train,val,test}.{csv,tsv}                   one split per file
    classnames.txt, zeroshot_classification_templates.txt beside them (optional)

Columns (header row): the image path (`image_key`, default the first of `filepath`, `image`,
`image_path`, `path`), relative to the manifest's directory; an integer label (`label_key`, default
`label` where present); captions (`caption_key`, default the first of `title`, `caption`,
`captions`, `text` present), each cell one caption or a JSON list of them (`caption_lists.py`).
Rows naming the same image are one image with all their captions (COCO's five rows per image); its
rows must agree on the label. The separator is a comma for `.csv`, a tab otherwise, unless given.
"""

from __future__ import annotations

from pathlib import Path

from cliplab.data.benchmark.dataset import BenchmarkDataset, BenchmarkSplit
from cliplab.data.benchmark.image_folder import ImageFiles
from cliplab.data.benchmark.table_keys import TableKeys, open_table_dataset, pick_column, split_files
from cliplab.data.caption_lists import captions_in_field
from cliplab.data.csv_dataset import open_manifest
from cliplab.errors import InvalidInputError

LAYOUT = "csv"
SUFFIXES = (".csv", ".tsv")
IMAGE_KEYS = ("filepath", "image", "image_path", "path")
CAPTION_KEYS = ("title", "caption", "captions", "text")
LABEL_KEYS = ("label",)


def detect(location: Path) -> bool:
    return bool(split_files(location, SUFFIXES))


def open_dataset(location: Path, *, keys: TableKeys, name: str | None = None) -> BenchmarkDataset:
    """The manifest(s) at `location` (layout: module docstring)."""
    return open_table_dataset(location, suffixes=SUFFIXES, layout=LAYOUT, keys=keys, name=name, open_split=_open_split)


def _open_split(manifest: Path, split: str, keys: TableKeys) -> BenchmarkSplit:
    separator = keys.separator or ("," if manifest.suffix.lower() == ".csv" else "\t")
    with open_manifest(manifest, separator) as rows:
        image_key = pick_column(rows.columns, keys.image_key, IMAGE_KEYS, "--image-key", manifest, required=True)
        label_key = pick_column(rows.columns, keys.label_key, LABEL_KEYS, "--label-key", manifest)
        caption_key = pick_column(rows.columns, keys.caption_key, CAPTION_KEYS, "--caption-key", manifest)
        if label_key is None and caption_key is None:
            raise InvalidInputError(f"manifest {manifest} has neither a label column ({', '.join(LABEL_KEYS)}) nor a "
                                    f"caption column ({', '.join(CAPTION_KEYS)}); its columns are {rows.columns} "
                                    f"(separator {separator!r}): name them with --label-key / --caption-key")
        base = manifest.resolve().parent
        order: dict[Path, int] = {}
        labels: list[int] = []
        captions: list[list[str]] = []
        for line, row in rows:
            path = base / (row[image_key] or "")
            where = f"manifest {manifest} line {line}"
            label = _label(row[label_key], where, label_key) if label_key else None
            if path not in order:
                order[path] = len(order)
                labels.append(label)
                captions.append([])
            elif label_key and labels[order[path]] != label:
                raise InvalidInputError(f"{where}: image {row[image_key]} has label {label} here and "
                                        f"{labels[order[path]]} on an earlier line")
            if caption_key:
                found = captions_in_field(row[caption_key] or "", where=f"{where}, column {caption_key!r}")
                if not all(caption.strip() for caption in found):
                    raise InvalidInputError(f"{where}: column {caption_key!r} is blank; expected a caption")
                captions[order[path]].extend(found)
    return BenchmarkSplit(name=split, images=ImageFiles(tuple(order)),
                          labels=tuple(labels) if label_key else None,
                          captions=tuple(tuple(texts) for texts in captions) if caption_key else None,
                          where=f"manifest {manifest}")


def _label(value: str | None, where: str, column: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{where}: column {column!r} must hold an integer label, got {value!r}") from None
