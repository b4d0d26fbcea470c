"""What a checkpoint format is: one `CheckpointFormat` record holding how cliplab recognises it,
reads it and (for some) writes it, and `Location`, what a path a user gave holds, looked at once.

The contracts a format's parts keep:

- name: `LoadedModel.format` of what it reads ("bundle", "open_clip_hub", ...). summary: its item
  in the accepted-formats listing (`accepted_formats()`, every "not a checkpoint" error).
- detect(location) -> bool: whether `location` is this format, from file names and (for a weights
  file) the object in the file, read once for every format (`Location.weights_object`); False for a
  path that does not exist. The entries' detects exclude one another, so the table's order is only
  the listing's order.
- read(location) -> `LoadedModel`: the model (eval mode, on `location.request.device`; on "meta"
  the architecture and an opener of the weights), its preprocessing and tokenizer. A user error
  names the file and what is wrong; `NotACheckpointError` is completed with the accepted formats.
- missing_hint(location) -> str: what a location that does not exist may have meant as this format
  (a pretrained tag without its model, say), added to the "does not exist" error; "" for nothing.
- or resolve(text) -> Path | None, for a location prefix (`hf-hub:`, `local-dir:`): the local
  directory the text names (None: not this prefix), which is then detected as any path.
- architecture (formats read, not prefixes): "carried" (the checkpoint holds it; `model=` must
  agree), "read off the weights" (`model=` may replace it) or "named" (`model=` must name it).
- holds_ema: the format can hold a training run's EMA weights (`LoadRequest.ema`; its reader reads
  them, or says the checkpoint has none); a request for them from any other format is refused.
- export (`ExportForm` or None): the format `cliplab export --format` / `cliplab.export` writes:
  `check(model, tokenizer, **options)` refuses what the format cannot represent before anything is
  written, `write(model, tokenizer, directory, **options)` writes the files; `options` names the
  keyword options of `cliplab.export` the format takes (open_clip's `hf_tokenizer_name`), which
  every other format refuses by name.

A format's module imports its reader (torch, safetensors ...) inside the functions that use it, so
that the table (read by the CLI's --help) imports without them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cliplab.errors import UserError

if TYPE_CHECKING:
    import torch
    from torch import nn

ARCHITECTURES = ("carried", "read off the weights", "named")
# Opens a checkpoint's weights for a model built on meta: -> take(name), the tensor of entry `name`.
WeightsOpener = Callable[[], Callable[[str], "torch.Tensor"]]


class CheckpointNotFoundError(UserError, FileNotFoundError):
    """A path that holds no checkpoint cliplab reads (the message says what it holds instead)."""


class NotACheckpointError(UserError):
    """A file a format was asked to read that holds nothing cliplab reads; whoever reports it adds
    the accepted formats (`cliplab.pretrained.formats.with_accepted_formats`)."""


@dataclass(frozen=True, kw_only=True)
class LoadRequest:
    """How a checkpoint is to be read: model (the architecture, for formats without one; else it
    must agree), device ("meta": build without reading the weights), output_dict (what forward
    returns), require_tokenizer (False accepts a checkpoint without tokenizer files cliplab reads),
    ema (the EMA weights of a training run trained with --ema-decay instead of its model's: only a
    format with `holds_ema` reads them)."""

    model: Any = None
    device: Any = "cpu"
    output_dict: bool = False
    require_tokenizer: bool = True
    ema: bool = False


@dataclass(frozen=True)
class LoadedModel:
    """A model ready for use: eval mode, on `device` (on "meta": the architecture, no weights).

    preprocess: PIL image -> Float[3, S, S] (its settings: `model.config.preprocess`); tokenizer:
    texts -> Long[N, T], or None where the checkpoint has none cliplab reads (`require_tokenizer=
    False` only); path: the directory or file read; format: the name of the `CheckpointFormat` whose
    reader made it ("bundle", "open_clip_hub", "open_clip_checkpoint" (an open_clip pretrained tag
    too), "openai", "hf" or "cliplab_state_dict"). weights (for a model on
    "meta"): opens the checkpoint's weights, returning take(name) -> the tensor of the model's
    state-dict entry `name`, read on demand (what fills a sharded model shard by shard,
    `cliplab.train.parallel.build`).
    """

    model: nn.Module
    preprocess: Callable
    tokenizer: Any
    path: Path
    device: torch.device
    format: str
    weights: WeightsOpener | None = None


class Location:
    """A path to read with `request`, looked at once for every format's `detect`; `text` is the
    location as the user gave it (a prefix, a pretrained tag ...)."""

    def __init__(self, path: Path, request: LoadRequest, text: str | None = None):
        self.path = path
        self.request = request
        self.text = str(path) if text is None else text

    @property
    def directory(self) -> Path:
        """The path when it is a directory, else the directory holding it."""
        return self.path if self.path.is_dir() else self.path.parent

    @cached_property
    def weights_object(self) -> Any:
        """What a weights file outside a checkpoint directory holds (read whole, once, safely: see
        `cliplab.pretrained.weight_files`); an open_clip training checkpoint's state dict unwrapped."""
        from cliplab.pretrained.loaders import read_weights_object

        return read_weights_object(self.path)


@dataclass(frozen=True, kw_only=True)
class ExportForm:
    """How a format is written (see the module docstring); name: the `--format` value; options:
    the keyword options its check and write take."""

    name: str
    check: Callable[..., None]
    write: Callable[..., Any]
    options: tuple[str, ...] = ()


def _never(location: Location) -> bool:
    return False


def _no_hint(location: Location) -> str:
    return ""


@dataclass(frozen=True, kw_only=True)
class CheckpointFormat:
    """What cliplab does with one checkpoint format (each part's contract: the module docstring)."""

    name: str
    summary: str
    architecture: str | None = None
    detect: Callable[[Location], bool] = _never
    read: Callable[[Location], LoadedModel] | None = None
    resolve: Callable[[str], Path | None] | None = None
    export: ExportForm | None = None
    holds_ema: bool = False
    missing_hint: Callable[[Location], str] = _no_hint

    def __post_init__(self) -> None:
        if (self.read is None) == (self.resolve is None):
            raise ValueError(f"CheckpointFormat {self.name!r}: give exactly one of read and resolve")
        if (self.architecture in ARCHITECTURES) != (self.read is not None):
            raise ValueError(f"CheckpointFormat {self.name!r}: a format read has an architecture among "
                             f"{ARCHITECTURES}, a prefix none")
