"""Format "cliplab_state_dict": a weights file outside any checkpoint directory holding a cliplab
model's state dict (`torch.save(model.state_dict())` or safetensors; `cliplab.pretrained.cliplab_keys`
recognises its names), with the architecture named: `load(path, model='tiny-vit')`."""

from __future__ import annotations

from cliplab.pretrained.formats.open_clip_checkpoint import holds_cliplab_state, weights_file_format

FORMAT = weights_file_format(
    name="cliplab_state_dict", architecture="named", holds=holds_cliplab_state,
    summary="a cliplab model's state dict (torch.save(model.state_dict()) or safetensors), with the architecture "
            "named: load(path, model='tiny-vit')",
)
