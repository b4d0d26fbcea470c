"""Source "csv": image-caption pairs listed in a CSV/TSV manifest (`data.csv_dataset`, open_clip's
`--csv-*` keys: `csv_img_key`, `csv_caption_key`, `csv_label_key`, `csv_separator`; a caption cell
may hold a JSON list of captions); training manifests joined by `::` are a mixture. As a benchmark
dataset a `.csv` / `.tsv` file or a directory of `{split}.csv` (`data.benchmark.csv_table`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from cliplab.data.mixture_syntax import split_sources
from cliplab.data.sources.spec import ClassLabels, DataSource, MapStyle, Mixing, layout_form
from cliplab.errors import InvalidInputError, MissingInputError, UserError

if TYPE_CHECKING:
    from cliplab.data.config import DataConfig
    from cliplab.data.csv_dataset import CsvDataset


def open_split(config: DataConfig, train: bool, fetch=None) -> CsvDataset:
    from cliplab.data.csv_dataset import CsvDataset

    return CsvDataset(config.train_data if train else config.val_data, img_key=config.csv_img_key,
                      caption_key=config.csv_caption_key, separator=config.csv_separator,
                      label_key=config.csv_label_key, caption_seed=config.caption_seed)


def captions(config: DataConfig) -> Iterator[str]:
    """The non-empty captions of the manifests' `csv_caption_key` cells (each of a list), in row
    order, manifest after manifest of a mixture."""
    for manifest in split_sources(config.train_data):
        yield from _manifest_captions(config, Path(manifest))


def _manifest_captions(config: DataConfig, manifest: Path) -> Iterator[str]:
    from cliplab.data.caption_lists import corpus_captions
    from cliplab.data.csv_dataset import open_manifest

    try:
        with open_manifest(manifest, config.csv_separator) as rows:
            if config.csv_caption_key not in rows.columns:
                raise UserError(f"config key 'data.csv_caption_key' (--csv-caption-key) names "
                                f"{config.csv_caption_key!r}, which is not a column of {manifest} "
                                f"(columns: {rows.columns}, separator {config.csv_separator!r})")
            for _, row in rows:
                yield from corpus_captions(row[config.csv_caption_key] or "")
    except (InvalidInputError, MissingInputError) as error:
        raise UserError(f"config key 'data.train_data' (--train-data): {error}") from None


def check(location: str) -> None:
    if not Path(location).is_file():
        raise MissingInputError(f"manifest {location} does not exist")


SOURCE = DataSource(
    name="csv", title="CSV", summary="image paths and captions listed in a CSV/TSV manifest (open_clip's --csv-* keys)",
    location="a CSV/TSV manifest (relative image paths are read from its directory)",
    map_style=MapStyle(open=open_split), captions=captions, check=check,
    mixing=Mixing(), caption_lists="a JSON list in the caption cell (`csv_caption_key`)",
    class_labels=ClassLabels(present=lambda config: config.csv_label_key is not None, needs="with csv_label_key"),
    benchmark=layout_form("csv_table", "a .csv/.tsv file (or a directory of {split}.csv ...)", takes_keys=True),
)
