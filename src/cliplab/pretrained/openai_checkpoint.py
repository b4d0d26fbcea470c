"""OpenAI CLIP checkpoints: the architecture is read off the tensor shapes.

An OpenAI `.pt` (a TorchScript archive, or its state dict saved plainly) uses open_clip's tensor
names, stores conv / linear / attention / projection weights in fp16, and carries three scalar
entries: `input_resolution`, `context_length`, `vocab_size`. The rules below are the ones open_clip's
`build_model_from_openai_state_dict` applies (facts of the format): a ViT when `visual.proj`
exists, else a ModifiedResNet; widths from the first layers' shapes; layer counts from the block
names; heads = width / 64 for the text tower and 32 * width / 64 for the ResNet's attention pool;
image size from the position-embedding length; QuickGELU, which OpenAI trained with.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
OPENAI_HEAD_WIDTH = 64
RESNET_DOWNSAMPLING = 32


def is_openai_state_dict(state: Mapping[str, object]) -> bool:
    """An OpenAI CLIP state dict: open_clip's layout plus OpenAI's scalar entries."""
    return "token_embedding.weight" in state and all(key in state for key in OPENAI_EXTRA_KEYS)


def without_openai_extras(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor for name, tensor in state.items() if name not in OPENAI_EXTRA_KEYS}


def _square_side(count: int, name: str) -> int:
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f"{name} has {count} positions, not a square grid (+1)")
    return side


def _count_indices(state: Mapping[str, torch.Tensor], prefix: str, position: int) -> int:
    return len({name.split(".")[position] for name in state if name.startswith(prefix)})


def openai_model_cfg(state: Mapping[str, torch.Tensor]) -> dict:
    """The open_clip `model_cfg` (quick_gelu on) of an OpenAI CLIP state dict."""
    if "visual.proj" in state:
        width = state["visual.conv1.weight"].shape[0]
        patch_size = state["visual.conv1.weight"].shape[-1]
        layers = len([name for name in state
                      if name.startswith("visual.") and name.endswith(".attn.in_proj_weight")])
        grid = _square_side(state["visual.positional_embedding"].shape[0] - 1, "visual.positional_embedding")
        vision_cfg = {"layers": layers, "width": width, "patch_size": patch_size, "image_size": patch_size * grid}
    else:
        layers = [_count_indices(state, f"visual.layer{stage}.", 2) for stage in (1, 2, 3, 4)]
        width = state["visual.layer1.0.conv1.weight"].shape[0]
        grid = _square_side(state["visual.attnpool.positional_embedding"].shape[0] - 1,
                            "visual.attnpool.positional_embedding")
        vision_cfg = {"layers": layers, "width": width, "patch_size": None,
                      "image_size": grid * RESNET_DOWNSAMPLING}
    text_width = state["ln_final.weight"].shape[0]
    text_cfg = {"context_length": state["positional_embedding"].shape[0],
                "vocab_size": state["token_embedding.weight"].shape[0], "width": text_width,
                "heads": text_width // OPENAI_HEAD_WIDTH,
                "layers": _count_indices(state, "transformer.resblocks", 2)}
    return {"embed_dim": state["text_projection"].shape[1], "quick_gelu": True,
            "vision_cfg": vision_cfg, "text_cfg": text_cfg}
