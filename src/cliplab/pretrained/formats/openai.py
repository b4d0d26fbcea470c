"""Format "openai": OpenAI CLIP's `.pt`, a TorchScript archive (only its state dict is read) or the
state dict saved plainly, recognised by its scalar entries (`cliplab.pretrained.openai_checkpoint`);
the architecture is read off the tensor shapes unless `model=` names one."""

from __future__ import annotations

from cliplab.pretrained.formats.open_clip_checkpoint import holds_openai_state, weights_file_format

FORMAT = weights_file_format(
    name="openai", architecture="read off the weights", holds=holds_openai_state,
    summary="an OpenAI CLIP .pt (TorchScript archive or state dict with input_resolution, context_length, "
            "vocab_size)",
)
