"""Parts several format entries are made of, each reader imported when it is first used (see
`spec`: the table imports without torch): reading a foreign checkpoint directory, and an export
done by `cliplab.pretrained.export`."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cliplab.pretrained.formats.spec import ExportForm, LoadedModel, Location


def directory_detector(is_directory: Callable[[Path], bool]) -> Callable[[Location], bool]:
    """The `detect` of a directory format: the path exists and is (or lies in) such a directory."""
    return lambda location: location.path.exists() and is_directory(location.directory)


def directory_reader(reader: str) -> Callable[[Location], LoadedModel]:
    """The `read` of a foreign directory format whose reader is
    `cliplab.pretrained.loaders.<reader>(directory, weights_file_or_None) -> ForeignCheckpoint`."""
    def read(location: Location) -> LoadedModel:
        loaders = importlib.import_module("cliplab.pretrained.loaders")
        weights = None if location.path.is_dir() else location.path
        checkpoint = getattr(loaders, reader)(location.directory, weights)
        return loaders.loaded_from_foreign(checkpoint, location.request)
    return read


def exported_by(name: str, *, check: str, write: str, options: tuple[str, ...] = ()) -> ExportForm:
    """The export `name` done by `cliplab.pretrained.export.<check>(model, tokenizer, **options)` and
    `<write>(model, config, tokenizer, directory, **options)`."""
    def module() -> Any:
        return importlib.import_module("cliplab.pretrained.export")

    def run_check(model: Any, tokenizer: Any, **values: Any) -> None:
        getattr(module(), check)(model, tokenizer, **values)

    def run_write(model: Any, tokenizer: Any, directory: Path, **values: Any) -> Any:
        return getattr(module(), write)(model, model.config, tokenizer, directory, **values)

    return ExportForm(name=name, check=run_check, write=run_write, options=options)
