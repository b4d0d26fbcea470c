"""The checkpoint-format registry: every kind of checkpoint path cliplab reads (and the ones it
writes), one `CheckpointFormat` each (see `spec` for what a format holds), in one table, `FORMATS`.

Everything that depends on what a path holds asks this table: `read_checkpoint` (what
`cliplab.load` / `load_model` and through them eval, classify, embed, export, wise-ft and
`train --pretrained` read: a prefix resolved, then the one format whose `detect` accepts the
path), the accepted-formats listing of every "not a checkpoint" error (`accepted_formats`), the
formats `cliplab export` / `cliplab.export` write (`EXPORT_FORMATS`), and whether `model=` must
agree with a checkpoint (`architecture`).

How to add a format: write one module in this package that defines `detect(location)` (from file
names, or `location.weights_object` for a weights file; it must exclude the other formats) and
`read(location) -> LoadedModel` (for a foreign format: its reader makes a
`cliplab.pretrained.loaders.ForeignCheckpoint` and `loaded_from_foreign` the rest), imports its
reader inside those functions (`parts` has a directory format's parts,
`open_clip_checkpoint.weights_file_format` a weights file's), and ends with `FORMAT =
CheckpointFormat(...)`; then add that `FORMAT` to `FORMATS` below. Its summary joins the accepted-formats listing at its place in the
table (append it: messages number the items).

Last, `python scripts/write_docs_tables.py` rewrites the docs' generated table from this one (a
test keeps them equal), and tests/test_pretrained_formats.py pins the registered formats in order: add the new name there.
"""

from __future__ import annotations

from pathlib import Path

from cliplab.errors import UserError
from cliplab.registry_index import index_entries
from cliplab.pretrained.formats import (bundle, cliplab_state_dict, hf, open_clip_checkpoint, open_clip_hub, openai,
                                        prefixes, pretrained_tag)
from cliplab.pretrained.formats.spec import (CheckpointFormat, CheckpointNotFoundError, ExportForm, LoadedModel,
                                             LoadRequest, Location, NotACheckpointError, WeightsOpener)

FORMATS: tuple[CheckpointFormat, ...] = (
    bundle.FORMAT,
    open_clip_hub.FORMAT,
    open_clip_checkpoint.FORMAT,
    openai.FORMAT,
    hf.FORMAT,
    prefixes.FORMAT,
    cliplab_state_dict.FORMAT,
    pretrained_tag.FORMAT,
)

_BY_NAME = index_entries(FORMATS, lambda entry: entry.name, "FORMATS")
# what `cliplab export --format` / `cliplab.export(format=)` write
EXPORT_FORMATS: tuple[str, ...] = tuple(entry.export.name for entry in FORMATS if entry.export is not None)


def format_named(name: str) -> CheckpointFormat:
    """The format `LoadedModel.format` (or `ForeignCheckpoint.format`) `name` names."""
    return _BY_NAME[name]


def export_form(name: str) -> ExportForm:
    """The writer of export format `name`; UserError "format must be one of (...)" otherwise."""
    for entry in FORMATS:
        if entry.export is not None and entry.export.name == name:
            return entry.export
    raise UserError(f"format must be one of {EXPORT_FORMATS}, got {name!r}")


def accepted_formats() -> str:
    """The accepted formats as one line, for error messages."""
    return "accepted: " + "; ".join(f"({index}) {entry.summary}" for index, entry in enumerate(FORMATS, 1))


def foreign_directory(directory: Path) -> bool:
    """Whether `directory` is another format's checkpoint directory than cliplab's own."""
    return open_clip_hub.is_hub_directory(directory) or hf.is_hf_directory(directory)


def resolve_location(path: str | Path, request: LoadRequest) -> Location:
    """`path` with a location prefix resolved (a Hub download, a local directory)."""
    text = str(path)
    for entry in FORMATS:
        resolved = entry.resolve(text) if entry.resolve is not None else None
        if resolved is not None:
            return Location(resolved, request, text)
    return Location(Path(path), request, text)


def read_checkpoint(path: str | Path, request: LoadRequest) -> LoadedModel:
    """The model at `path` read by the one format that detects it (module docstring);
    CheckpointNotFoundError when none does, a user error of the format's reader otherwise."""
    location = resolve_location(path, request)
    try:
        for entry in FORMATS:
            if entry.read is not None and entry.detect(location):
                _check_ema_request(entry, location)
                return entry.read(location)
    except NotACheckpointError as error:
        raise type(error)(f"{error}; {accepted_formats()}") from None
    if not location.path.exists():
        hints = "".join(entry.missing_hint(location) for entry in FORMATS)
        raise CheckpointNotFoundError(f"checkpoint path {location.path} does not exist{hints}")
    raise CheckpointNotFoundError(f"{location.path} is not a checkpoint cliplab reads; {accepted_formats()}")


def _check_ema_request(entry: CheckpointFormat, location: Location) -> None:
    if location.request.ema and not entry.holds_ema:
        raise UserError(f"{location.text} ({entry.name}) holds no EMA weights: only cliplab training checkpoints "
                        "of a run trained with --ema-decay (ema.decay) have them")


def formats_table() -> str:
    """The registered formats as the Markdown table docs/pretrained.md shows (a test keeps them equal)."""
    lines = ["| # | format | architecture | exported as | what it is |", "|---|---|---|---|---|"]
    for index, entry in enumerate(FORMATS, 1):
        exported = f"`--format {entry.export.name}`" if entry.export is not None else "-"
        lines.append(f"| {index} | `{entry.name}` | {entry.architecture or '-'} | {exported} | {entry.summary} |")
    return "\n".join(lines) + "\n"


__all__ = ["EXPORT_FORMATS", "FORMATS", "CheckpointFormat", "CheckpointNotFoundError", "ExportForm", "LoadRequest",
           "LoadedModel", "Location", "NotACheckpointError", "WeightsOpener", "accepted_formats", "export_form",
           "foreign_directory", "format_named", "formats_table", "read_checkpoint", "resolve_location"]
