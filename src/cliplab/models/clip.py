"""CLIP and SigLIP: two towers, linear projections into a shared latent, a learned temperature.

The same class serves kind "clip" and "siglip"; SigLIP adds a learned `logit_bias`. Losses live in
`cliplab.losses`; the model only returns features and the (exponentiated) scale, like open_clip.
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from cliplab.models.config import ModelConfig
from cliplab.models.families import build_tower, family_of
from cliplab.models.towers.locking import GroupItem, freeze_groups, is_frozen


def projection(kind: str, width: int, embed_dim: int) -> nn.Module:
    """A tower's map into the shared latent: [.., width] -> [.., embed_dim]. kind "linear" (no
    bias), "linear_bias", "mlp" (open_clip's HF-tower projection: Linear, exact GELU, Linear, no
    biases, hidden width (width + embed_dim) // 2), or "none" (identity; width == embed_dim)."""
    if kind == "none":
        return nn.Identity()
    if kind == "mlp":
        hidden = (width + embed_dim) // 2
        return nn.Sequential(nn.Linear(width, hidden, bias=False), nn.GELU(), nn.Linear(hidden, embed_dim, bias=False))
    return nn.Linear(width, embed_dim, bias=kind == "linear_bias")


def init_projection(layer: nn.Module) -> None:
    """Each linear map's weights std (its input width)^-0.5, biases zero (identity projections have
    nothing to initialise)."""
    for linear in layer.modules():
        if isinstance(linear, nn.Linear):
            nn.init.normal_(linear.weight, std=linear.in_features ** -0.5)
            if linear.bias is not None:
                nn.init.zeros_(linear.bias)


class CLIP(nn.Module):
    """images [B, 3, S, S] float, tokens [B, T] long -> features in a shared E-dim latent.

    Attributes: `vision_tower` and `text_tower` (each with `forward_tokens` and `width`; the module
    their configs' tower families build, see `cliplab.models.families`),
    `image_projection` [W_v -> E] and `text_projection` [W_t -> E] (see `projection`), `logit_scale`
    (log of the temperature's inverse), `logit_bias` (SigLIP only, else None), `config`,
    `output_dict` (what `forward` returns: open_clip's tuple when False, the default, else a dict;
    training builds its model with output_dict=True, as open_clip's training does).
    """

    def __init__(self, config: ModelConfig, *, output_dict: bool = False):
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise ValueError(f"config must be a ModelConfig, got {type(config).__name__}")
        self.config = config
        self.output_dict = output_dict
        self.vision_tower = build_tower(config.vision)
        self.text_tower = build_tower(config.text)
        self.image_projection = projection(config.vision.projection, config.vision.output_width,
                                           config.embed_dim)
        self.text_projection = projection(config.text.projection, config.text.width, config.embed_dim)
        init_projection(self.image_projection)
        init_projection(self.text_projection)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))
        self.logit_bias = (nn.Parameter(torch.tensor(float(config.init_logit_bias)))
                           if config.init_logit_bias is not None else None)

    # Frozen sides run without building a graph: nothing in them could receive a gradient.
    def _image_side(self) -> list[GroupItem]:
        return [self.vision_tower, self.image_projection]

    def _text_side(self) -> list[GroupItem]:
        return [self.text_tower, self.text_projection]

    def _image_context(self):
        return torch.no_grad() if is_frozen(self._image_side()) else contextlib.nullcontext()

    def _text_context(self):
        return torch.no_grad() if is_frozen(self._text_side()) else contextlib.nullcontext()

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """images [B, 3, S, S] float -> image_features [B, E] (unit norm when normalize)."""
        with self._image_context():
            features = self.image_projection(self.vision_tower(images))
        return F.normalize(features, dim=-1) if normalize else features

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """tokens [B, T] long, right-padded with pad_id -> text_features [B, E]."""
        with self._text_context():
            features = self.text_projection(self.text_tower(tokens))
        return F.normalize(features, dim=-1) if normalize else features

    def encode_image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] -> projected per-patch (ViT) or per-cell (conv) latents [B, P, E].

        Not normalised. Under patch dropout in training, P is the kept patch count.
        """
        with self._image_context():
            return self.image_projection(self.vision_tower.forward_tokens(images))

    def encode_text_tokens(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens [B, T] -> (projected per-token latents [B, T, E], mask Bool[B, T] True for real
        tokens, i.e. not pad_id). Not normalised; padded rows hold values to be ignored."""
        with self._text_context():
            latents = self.text_projection(self.text_tower.forward_tokens(tokens))
        return latents, tokens != self.config.text.pad_id

    def token_columns_read(self, tokens: torch.Tensor) -> int:
        """How many leading columns of tokens [B, T] `forward` reads: the text tower's pooled
        prefix (`TextTransformer.trainable_prefix_length`) where it has one, else T. Cutting the
        tokens to it leaves every output the same, up to float reassociation."""
        prefix_length = getattr(self.text_tower, "trainable_prefix_length", None)
        return tokens.shape[1] if prefix_length is None else prefix_length(tokens)

    def forward(self, images: torch.Tensor, tokens: torch.Tensor
                ) -> dict[str, torch.Tensor] | tuple[torch.Tensor, ...]:
        """With `output_dict`: {"image_features": [B, E], "text_features": [B, E] (both unit norm),
        "logit_scale": 0-d (exp of the parameter), "logit_bias": 0-d (SigLIP only)}. Without it
        (the default), open_clip's tuple of the same values in that order."""
        output = {
            "image_features": self.encode_image(images, normalize=True),
            "text_features": self.encode_text(tokens, normalize=True),
            "logit_scale": self.logit_scale.exp(),
        }
        if self.logit_bias is not None:
            output["logit_bias"] = self.logit_bias
        return output if self.output_dict else tuple(output.values())

    def lock_image_tower(self, unlocked_groups: int = 0, freeze_bn_stats: bool = False) -> None:
        """Freeze the image tower and its projection except the last `unlocked_groups` groups, as
        open_clip's `lock_image_tower` (LiT): every parameter of the locked groups, norm layers
        included. Groups, input to output, as open_clip counts them for the tower's family
        (`TowerFamily.lock_groups`; open_clip's own towers: embeddings or stem, each block or stage
        but the last, the last with the final norm and pooler, the projection; a timm trunk's
        projection outside timm's model stays trainable, as open_clip's `TimmModel.lock` leaves it:
        `TowerFamily.projection_locked`). freeze_bn_stats: the locked groups' BatchNorm layers
        also stop updating their running statistics, as open_clip's --lock-image-freeze-bn-stats.
        """
        freeze_groups(self._lock_groups("vision", self.image_projection), unlocked_groups, True,
                      argument_name="unlocked_groups", freeze_bn_stats=freeze_bn_stats)

    def lock_text_tower(self, unlocked_layers: int = 0, freeze_layer_norm: bool = True) -> None:
        """Freeze the text tower and its projection except the last `unlocked_layers` groups, as
        open_clip's `lock_text_tower` (its groups: embeddings; each block but the last; the last
        with the final norm; the projection). freeze_layer_norm=False leaves the norm layers of the
        tower trainable (open_clip's Hugging Face text tower; its own text transformer refuses False)."""
        freeze_groups(self._lock_groups("text", self.text_projection), unlocked_layers, freeze_layer_norm,
                      argument_name="unlocked_layers")

    def _lock_groups(self, side: str, projection: nn.Module) -> list[list[GroupItem]]:
        config = getattr(self.config, side)
        family = family_of(config)
        groups = family.lock_groups(getattr(self, f"{side}_tower"))
        if family.projection_locked(config):
            groups[-1] = [*groups[-1], projection]
        return groups

    def fsdp_units(self) -> list[nn.Module]:
        """The submodules FSDP2 shards as units of their own, input to output: the image tower's,
        then the text tower's, as their families name them (`TowerFamily.fsdp_units`)."""
        return (family_of(self.config.vision).fsdp_units(self.vision_tower)
                + family_of(self.config.text).fsdp_units(self.text_tower))

    def compile_blocks(self, **options) -> None:
        """torch.compile each repeated unit (`fsdp_units`: blocks, stages) in place: regional
        compilation. The blocks of a tower run the same code on the same shapes, so dynamo traces
        one graph per kind of block and every block of that kind reuses it (a ViT's last block,
        computing the class row alone in the pooled forward, has a graph of its own); the glue
        between the blocks (embeddings, pooling, data-dependent trimming) stays eager. Text blocks are compiled
        for any sequence length at once (`dynamic=True`): the pooled text forward runs on a
        batch-dependent prefix (`TextTransformer.forward`), which would otherwise cost a second
        compilation when the length first changes. The compiled kernels round differently from
        eager ones (fused elementwise work), so it is opt-in (`--torchcompile`). options: more of
        torch.compile's keyword arguments (backend, mode)."""
        text_units = set(family_of(self.config.text).fsdp_units(self.text_tower))
        for unit in self.fsdp_units():
            unit.compile(dynamic=True if unit in text_units else None, **options)

    def reparameterize(self) -> "CLIP":
        """Fold the image tower's train-time branches into single convolutions for inference, in
        place, when its family has them (FastViT / MobileCLIP: `FastVitTower.reparameterize`);
        nothing for other towers. Eval-mode features stay equal up to float rounding; the config
        records the folded layout, so a saved model loads back folded. Returns self."""
        if hasattr(self.vision_tower, "reparameterize"):
            self.vision_tower.reparameterize()
            self.config = dataclasses.replace(self.config, vision=self.vision_tower.config)
        return self

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in backward (less memory, about one more forward of time)."""
        self.vision_tower.set_grad_checkpointing(enable)
        self.text_tower.set_grad_checkpointing(enable)
