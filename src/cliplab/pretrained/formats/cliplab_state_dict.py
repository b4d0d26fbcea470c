"""Format "cliplab_state_dict": a weights file outside any checkpoint directory holding a cliplab
model's state dict (`torch.save(model.state_dict())` or safetensors; `cliplab.pretrained.cliplab_keys`
recognises its names), with the architecture named: `load(path, model='tiny-vit')`."""

from __future__ import annotations

from cliplab.pretrained.formats.open_clip_checkpoint import (holds_cliplab_state, is_lone_weights_file,
                                                             read_weights_file)
from cliplab.pretrained.formats.spec import CheckpointFormat

FORMAT = CheckpointFormat(
    name="cliplab_state_dict", architecture="named",
    summary="a cliplab model's state dict (torch.save(model.state_dict()) or safetensors), with the architecture "
            "named: load(path, model='tiny-vit')",
    detect=lambda location: is_lone_weights_file(location) and holds_cliplab_state(location),
    read=read_weights_file,
)
