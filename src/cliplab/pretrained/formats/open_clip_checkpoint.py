"""Format "open_clip_checkpoint": a weights file outside any checkpoint directory holding an
open_clip training checkpoint (`epoch_K.pt`: a dict with 'state_dict', DDP's `module.` prefix
dropped) or a state dict in open_clip's names; the architecture is named with `model=`."""

from __future__ import annotations

from collections.abc import Callable

from cliplab.pretrained.formats.spec import CheckpointFormat, LoadedModel, Location

WEIGHT_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


def is_lone_weights_file(location: Location) -> bool:
    """A weights file (by its suffix) that no checkpoint directory holds: its content decides the format."""
    from cliplab.pretrained.cliplab_bundle import is_bundle
    from cliplab.pretrained.formats.hf import is_hf_directory
    from cliplab.pretrained.formats.open_clip_hub import is_hub_directory

    path = location.path
    return (path.is_file() and path.suffix in WEIGHT_FILE_SUFFIXES and not is_bundle(path.parent)
            and not is_hub_directory(path.parent) and not is_hf_directory(path.parent))


def holds_openai_state(location: Location) -> bool:
    from cliplab.pretrained.openai_checkpoint import is_openai_state_dict

    state = location.weights_object
    return isinstance(state, dict) and is_openai_state_dict(state) and not holds_cliplab_state(location)


def holds_cliplab_state(location: Location) -> bool:
    """A state dict in cliplab's own names (`cliplab.pretrained.cliplab_keys`)."""
    from cliplab.pretrained.cliplab_keys import is_cliplab_layout

    state = location.weights_object
    return isinstance(state, dict) and is_cliplab_layout(state)


def read_weights_file(location: Location) -> LoadedModel:
    """What `read_checkpoint_file` makes of the file (OpenAI's, open_clip's or cliplab's state dict),
    as a LoadedModel."""
    from cliplab.pretrained.loaders import loaded_from_foreign, read_checkpoint_file

    checkpoint = read_checkpoint_file(location.path, location.request.model, state=location.weights_object)
    return loaded_from_foreign(checkpoint, location.request)


def weights_file_format(*, name: str, architecture: str, summary: str,
                        holds: Callable[[Location], bool]) -> CheckpointFormat:
    """A format of lone weights files, told apart from the others by what the file `holds`; read by
    `read_checkpoint_file`, which tells them apart the same way."""
    return CheckpointFormat(name=name, architecture=architecture, summary=summary, read=read_weights_file,
                            detect=lambda location: is_lone_weights_file(location) and holds(location))


FORMAT = weights_file_format(
    name="open_clip_checkpoint", architecture="named",
    summary="an open_clip training checkpoint (epoch_K.pt, a dict with 'state_dict') or state-dict file, with "
            "the architecture named: load(path, model='ViT-B-32')",
    holds=lambda location: not holds_openai_state(location) and not holds_cliplab_state(location),
)
