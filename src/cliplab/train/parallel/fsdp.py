"""FSDP2 for cliplab's models: the units, their precision, 0-d parameters, and state in and out.

Units (`fully_shard` groups, each all-gathered just before it runs and freed after): the ones the
model's tower families name (`model.fsdp_units()`, from `TowerFamily.fsdp_units`: both towers'
residual blocks, the stages of a convolutional tower; CoCa's decoder layers), every x-clip
objective head that has parameters (the extra latent projections one unit each: the multiview
term calls them one at a time), each 0-d parameter (below), and the root (the trainable module).
The root keeps what is left: embeddings, final norms, poolers, projections.

With objectives the root is `ModelWithObjectives`, whose forward runs the model's forward and then
the terms, which call into the model again (`encode_image` on augmented views, the per-token
encoders, `text_tower.forward_tokens` for MLM). The model's own parameters therefore stay in the
root unit, gathered for that whole forward; the blocks and heads a term reaches gather themselves
through their own units. The model is not a unit of its own: FSDP2 gathers a unit only inside its
forward and registered methods, and a unit whose forward calls its registered encoders is
resharded when that forward ends, whatever `reshard_after_forward` says (torch 2.13).

0-d parameters: `fully_shard` refuses them, and cliplab's `logit_scale` / `logit_bias` are 0-d (as
open_clip's are). While sharded they are held as 1-element vectors behind a parametrization that
gives the model its 0-d tensor back, each in a unit of its own kept in fp32. Every state dict that
leaves a sharded run is renamed and reshaped back (`canonical_name`, `canonical_tensor`), so
bundles and checkpoints have exactly the unsharded format.

Mixed precision (`--precision amp_bf16` / `bf16`): parameters are all-gathered in bf16,
gradients reduce-scattered in fp32, the sharded master weights and AdamW state stay fp32; the
step still runs under bf16 autocast (norms and softmax in fp32), and the losses upcast their
inputs, so logits and losses are fp32; the logit scale and bias are gathered in fp32.

When the model is the root, its public encoders (`encode_image`, `encode_text` and their
per-token forms) are registered as FSDP forward methods, so they can be called on the sharded model
directly (registering is a no-op on a model that is not a unit).
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import nn
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method
from torch.nn.utils import parametrize

from cliplab.objectives.heads import ExtraLatentProjections
from cliplab.objectives.objectives import Objectives


SCALAR_PARAMETERS = ("logit_scale", "logit_bias")
ENCODER_METHODS = ("encode_image", "encode_text", "encode_image_tokens", "encode_text_tokens")
_PARAMETRIZED = "parametrizations.{}.original"

class OneElementAsScalar(nn.Module):
    """The parametrization of a 0-d parameter held as shape [1]: forward gives the 0-d value (a
    copy: FSDP2 must not hand out a view of its gathered tensor)."""

    def forward(self, vector: torch.Tensor) -> torch.Tensor:
        return vector.reshape(()).clone()

    def right_inverse(self, scalar: torch.Tensor) -> torch.Tensor:
        return scalar.reshape(1)


def canonical_name(name: str) -> str:
    """A parameter name of the sharded module -> its name in an unsharded state dict."""
    for scalar in SCALAR_PARAMETERS:
        name = name.replace(_PARAMETRIZED.format(scalar), scalar)
    return name


def is_held_scalar(name: str) -> bool:
    return canonical_name(name) != name


def hold_scalars_as_vectors(root: nn.Module) -> list[nn.Module]:
    """Parametrize every 0-d `logit_scale` / `logit_bias` under `root` as a 1-element vector;
    returns the parametrization modules (one FSDP unit each)."""
    held = []
    for module in list(root.modules()):
        for name in SCALAR_PARAMETERS:
            parameter = module._parameters.get(name)
            if parameter is not None and parameter.dim() == 0:
                parametrize.register_parametrization(module, name, OneElementAsScalar())
                held.append(module.parametrizations[name])
    return held


def _objective_heads(root: nn.Module) -> Iterator[nn.Module]:
    """The x-clip heads under `root` that have parameters, as the terms call them."""
    for module in root.modules():
        if isinstance(module, Objectives):
            for head in module.children():
                if isinstance(head, ExtraLatentProjections):
                    # The multiview term calls each projection alone, not through the pair's forward.
                    yield from (head.image_projection, head.text_projection)
                elif any(True for _ in head.parameters()):
                    yield head


def mixed_precision(precision: str) -> MixedPrecisionPolicy:
    """bf16 gathers with fp32 reduction under bf16 precisions; plain fp32 otherwise."""
    if precision in ("bf16", "amp_bf16"):
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def shard(root: nn.Module, model: nn.Module, *, precision: str, compile_blocks: bool) -> None:
    """Make `root` (the trainable module: `model`, or `model` with objective heads) an FSDP2
    module, in place, on its current device (meta is fine: see `sharded_state.fill_shards`).
    compile_blocks: torch.compile each block and stage (`--torchcompile` under FSDP2; see
    `CLIP.compile_blocks`)."""
    policy = mixed_precision(precision)
    scalars = hold_scalars_as_vectors(root)
    if compile_blocks:
        model.compile_blocks()
    for block in model.fsdp_units():
        fully_shard(block, mp_policy=policy)
    for head in _objective_heads(root):
        fully_shard(head, mp_policy=policy)
    for scalar in scalars:
        fully_shard(scalar, mp_policy=MixedPrecisionPolicy())
    fully_shard(root, mp_policy=policy)
    for method in ENCODER_METHODS:
        if hasattr(model, method):
            register_fsdp_forward_method(model, method)
