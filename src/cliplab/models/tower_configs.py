"""The configurations of cliplab's own towers: `VisionConfig` (tower families "vit", "conv" and
"resnet"), `TextConfig` (family "transformer") and CoCa's `DecoderConfig`; keyword-only and
validated on construction. A tower family added later brings its own config dataclass (see
`cliplab.models.families`); these three predate the registry and keep their shape.

Every field beyond the first cliplab layout defaults to that layout's behaviour, so a config (or a
bundle's config.json) written before the field existed reads unchanged. The extra fields make the
open_clip, OpenAI and Hugging Face architectures representable; `cliplab.pretrained` sets them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

from cliplab import config_checks
from cliplab.models.layers.activations import ACTIVATIONS

VISION_KINDS = ("vit", "conv", "resnet")  # the families whose config is VisionConfig
TEXT_KINDS = ("transformer",)  # the families whose config is TextConfig
VISION_POOLS = ("cls", "mean", "attention", "probe")
TEXT_POOLS = ("eot", "cls", "mean", "argmax", "eos", "last")
TEXT_POSITIONS = ("learned", "rotary")
PADDING_MASKS = ("keys", "none", "shifted")
FINAL_NORMS = ("tokens", "pooled")
PROJECTIONS = ("linear", "linear_bias", "none")
RESNET_STAGES = 4
RESNET_STRIDE = 32


# A model's architecture names its keys as the model JSON spells them ("vision.width must be ..."):
# the checks of `cliplab.config_checks`, keys not quoted.
check_positive_int = partial(config_checks.check_positive_int, quoted=False)
check_probability = partial(config_checks.check_probability, quoted=False)
check_choice = partial(config_checks.check_choice, quoted=False)
check_bool = partial(config_checks.check_bool, quoted=False)


def check_heads(prefix: str, width: int, heads: int) -> None:
    check_positive_int(f"{prefix}.heads", heads)
    config_checks.require_together(width % heads == 0, f"{prefix}.heads",
                                   f"{prefix}.width ({width}) must be divisible by {prefix}.heads ({heads})")


def check_positive_number(key: str, value) -> None:
    if not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{key} must be a positive number, got {value!r}")


def check_optional_number(key: str, value) -> None:
    if value is not None and not isinstance(value, (int, float)):
        raise ValueError(f"{key} must be a number or None, got {value!r}")


def check_norm_eps(key: str, value) -> None:
    if not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{key} must be a number in (0, 1), got {value!r}")


def check_block_options(prefix: str, config) -> None:
    """The options every transformer tower shares: mlp_ratio / mlp_width, activation, norm_eps,
    layer_scale, dropout."""
    check_positive_number(f"{prefix}.mlp_ratio", config.mlp_ratio)
    if config.mlp_width is not None:
        check_positive_int(f"{prefix}.mlp_width", config.mlp_width)
    check_choice(f"{prefix}.activation", config.activation, ACTIVATIONS)
    check_norm_eps(f"{prefix}.norm_eps", config.norm_eps)
    check_optional_number(f"{prefix}.layer_scale", config.layer_scale)
    check_probability(f"{prefix}.dropout", config.dropout)


@dataclass(kw_only=True)
class VisionConfig:
    """Image tower of the families "vit", "conv" and "resnet" (one dataclass for the three).

    kind: "vit" (patch embedding + transformer), "conv" (small conv net for tiny images) or "resnet"
    (OpenAI's ModifiedResNet: 3-conv stem, 4 bottleneck stages, attention pooling).
    image_size: input side S (square). width: channels of the ViT's tokens / the conv tower's output
    / the ResNet's stem (its output is 32 * width). layers: transformer blocks (vit), stride-2 stages
    (conv), or the 4 stage depths (resnet, a list). heads: attention heads (vit; the ResNet's
    attention pool). patch_size, patch_bias (bias on the patch embedding), pool, class_token,
    norm_pre, final_norm, patch_dropout apply to the ViT only.
    pool: "cls" (class token state), "mean" (mean over patch tokens), "attention" (open_clip's
    attentional pooler: `attention_pool_queries` learned queries of width `attention_pool_width`
    with `attention_pool_heads` heads; the first query's output is pooled, the others are the tokens)
    or "probe" (SigLIP's attention-probe head with a residual MLP).
    class_token: a learned class token before the patches (None: exactly when pool is "cls").
    norm_pre: LayerNorm before the blocks. final_norm: the last LayerNorm on every token before
    pooling ("tokens") or on the pooled output only ("pooled"; with "attention" on every query).
    mlp_width (default width * mlp_ratio), activation, norm_eps, layer_scale: see the blocks.
    projection: into the shared latent, "linear" (no bias), "linear_bias", or "none" (the tower's
    output already is the embedding). dropout: residual-branch dropout in the ViT blocks.
    """

    kind: str = "vit"
    image_size: int
    width: int
    layers: int | list[int]
    heads: int = 8
    patch_size: int = 16
    patch_bias: bool = False
    mlp_ratio: float = 4.0
    mlp_width: int | None = None
    pool: str = "cls"
    class_token: bool | None = None
    norm_pre: bool = True
    final_norm: str = "tokens"
    attention_pool_queries: int = 256
    attention_pool_heads: int = 8
    attention_pool_width: int | None = None
    activation: str = "gelu"
    norm_eps: float = 1e-5
    layer_scale: float | None = None
    projection: str = "linear"
    patch_dropout: float = 0.0
    dropout: float = 0.0

    def __post_init__(self) -> None:
        check_choice("vision.kind", self.kind, VISION_KINDS)
        check_positive_int("vision.image_size", self.image_size)
        check_positive_int("vision.width", self.width)
        check_choice("vision.projection", self.projection, PROJECTIONS)
        check_block_options("vision", self)
        if self.class_token is None:
            self.class_token = self.kind == "vit" and self.pool == "cls"
        if isinstance(self.layers, tuple):
            self.layers = list(self.layers)
        {"vit": self._check_vit, "conv": self._check_conv, "resnet": self._check_resnet}[self.kind]()

    def _check_vit(self) -> None:
        check_positive_int("vision.layers", self.layers)
        check_heads("vision", self.width, self.heads)
        check_positive_int("vision.patch_size", self.patch_size)
        if self.image_size % self.patch_size:
            raise ValueError(f"vision.image_size ({self.image_size}) must be divisible by "
                             f"vision.patch_size ({self.patch_size})")
        check_choice("vision.pool", self.pool, VISION_POOLS)
        check_choice("vision.final_norm", self.final_norm, FINAL_NORMS)
        for name in ("patch_bias", "class_token", "norm_pre"):
            check_bool(f"vision.{name}", getattr(self, name))
        check_probability("vision.patch_dropout", self.patch_dropout)
        if self.pool == "cls" and not self.class_token:
            raise ValueError("vision.pool='cls' needs vision.class_token=True")
        if self.pool == "attention":
            check_positive_int("vision.attention_pool_queries", self.attention_pool_queries)
            check_heads("vision.attention_pool", self.pool_width, self.attention_pool_heads)
            if self.final_norm != "pooled":
                raise ValueError("vision.pool='attention' normalises the pooler's output: it needs "
                                 "vision.final_norm='pooled'")
        elif self.attention_pool_width is not None:
            raise ValueError(f"vision.attention_pool_width applies to pool='attention' only, "
                             f"got pool={self.pool!r}")

    def _check_conv(self) -> None:
        check_positive_int("vision.layers", self.layers)
        if self.patch_dropout:
            raise ValueError("vision.patch_dropout applies to kind='vit' only; "
                             f"got {self.patch_dropout} with kind='conv'")
        if self.width % 2 ** self.layers:
            raise ValueError(f"vision.width ({self.width}) must be divisible by 2**vision.layers "
                             f"({2 ** self.layers}) for kind='conv' (channels halve per stage)")
        if self.image_size < 2 ** self.layers:
            raise ValueError(f"vision.image_size ({self.image_size}) must be >= 2**vision.layers "
                             f"({2 ** self.layers}) for kind='conv'")

    def _check_resnet(self) -> None:
        if (not isinstance(self.layers, list) or len(self.layers) != RESNET_STAGES
                or not all(isinstance(depth, int) and not isinstance(depth, bool) and depth > 0
                           for depth in self.layers)):
            raise ValueError(f"vision.layers must be a list of {RESNET_STAGES} positive ints for "
                             f"kind='resnet' (blocks per stage), got {self.layers!r}")
        if self.image_size % RESNET_STRIDE:
            raise ValueError(f"vision.image_size ({self.image_size}) must be divisible by "
                             f"{RESNET_STRIDE} for kind='resnet'")
        if self.width % 2:
            raise ValueError(f"vision.width ({self.width}) must be even for kind='resnet' "
                             "(the stem's first convs have width / 2 channels)")
        check_heads("vision", self.output_width, self.heads)
        if self.patch_dropout:
            raise ValueError("vision.patch_dropout applies to kind='vit' only; "
                             f"got {self.patch_dropout} with kind='resnet'")

    @property
    def pool_width(self) -> int:
        """Width of the attentional pooler's queries (pool='attention'); the tower width otherwise."""
        return self.attention_pool_width if self.attention_pool_width is not None else self.width

    @property
    def output_width(self) -> int:
        """Width of the pooled vector (what the image projection reads)."""
        if self.kind == "resnet":
            return self.width * RESNET_STRIDE
        return self.pool_width if self.kind == "vit" and self.pool == "attention" else self.width

    @property
    def grid_size(self) -> int:
        """Side of the output token grid: patches per side (vit) or cells per side (conv, resnet)."""
        if self.kind == "vit":
            return self.image_size // self.patch_size
        if self.kind == "resnet":
            return self.image_size // RESNET_STRIDE
        return math.ceil(self.image_size / 2 ** self.layers)


@dataclass(kw_only=True)
class TextConfig:
    """Text tower (family "transformer": cliplab's own; a config.json without `kind` is one).

    context_length: tokens per caption T. vocab_size: rows of the token embedding.
    position: "learned" absolute embedding or "rotary" (RoPE in every attention layer).
    pool: "eot" (hidden state at the last non-pad token), "cls" (a learned token appended after the
    T tokens), "mean" (mean over non-pad tokens), "argmax" (at the largest token id: open_clip and
    OpenAI, whose end-of-text id is the largest), "eos" (at the first `eos_id`: Hugging Face CLIP)
    or "last" (the last position, whatever it holds: SigLIP, CLIPA).
    causal: causal self-attention. padding_mask: which keys padding hides: "keys" (every pad_id
    position), "none" (none: open_clip, OpenAI, Hugging Face run the pads through attention), or
    "shifted" (open_clip CoCa's class-token mask: key j is hidden when token j - 1 is pad_id, the
    first key never). pad_id: the id whose positions count as padding (right padding).
    class_token_position: the class token gets a position embedding, index T (open_clip's
    `embed_cls`; the table then has context_length + 1 rows). final_norm: the last LayerNorm on every
    token ("tokens") or on the pooled vector only ("pooled"; the token states stay un-normalised).
    mlp_width, activation, norm_eps, layer_scale, dropout: see the blocks. projection: "linear",
    "linear_bias" or "none" (as for the image tower).
    """

    kind: str = "transformer"
    context_length: int
    vocab_size: int
    width: int
    layers: int
    heads: int = 8
    mlp_ratio: float = 4.0
    mlp_width: int | None = None
    position: str = "learned"
    pool: str = "eot"
    eos_id: int | None = None
    causal: bool = True
    padding_mask: str = "keys"
    pad_id: int = 0
    class_token_position: bool = False
    final_norm: str = "tokens"
    activation: str = "gelu"
    norm_eps: float = 1e-5
    layer_scale: float | None = None
    projection: str = "linear"
    dropout: float = 0.0
    rotary_base: float = 10000.0

    def __post_init__(self) -> None:
        check_choice("text.kind", self.kind, TEXT_KINDS)
        check_positive_int("text.context_length", self.context_length)
        check_positive_int("text.vocab_size", self.vocab_size)
        check_positive_int("text.width", self.width)
        check_positive_int("text.layers", self.layers)
        check_heads("text", self.width, self.heads)
        check_block_options("text", self)
        check_choice("text.position", self.position, TEXT_POSITIONS)
        check_choice("text.pool", self.pool, TEXT_POOLS)
        check_choice("text.padding_mask", self.padding_mask, PADDING_MASKS)
        check_choice("text.final_norm", self.final_norm, FINAL_NORMS)
        check_choice("text.projection", self.projection, PROJECTIONS)
        for name in ("causal", "class_token_position"):
            check_bool(f"text.{name}", getattr(self, name))
        if not isinstance(self.pad_id, int) or not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"text.pad_id must be an int in [0, vocab_size={self.vocab_size}), "
                             f"got {self.pad_id!r}")
        if self.pool == "eos":
            if not isinstance(self.eos_id, int) or not 0 <= self.eos_id < self.vocab_size:
                raise ValueError(f"text.pool='eos' needs text.eos_id, an int in [0, vocab_size="
                                 f"{self.vocab_size}), got {self.eos_id!r}")
        elif self.eos_id is not None:
            raise ValueError(f"text.eos_id applies to pool='eos' only, got pool={self.pool!r}")
        if self.class_token_position and (self.pool != "cls" or self.position != "learned"):
            raise ValueError("text.class_token_position needs pool='cls' and position='learned'")
        if self.padding_mask == "shifted" and self.pool != "cls":
            raise ValueError("text.padding_mask='shifted' is the class-token mask: it needs pool='cls'")
        if self.position == "rotary" and (self.width // self.heads) % 2:
            raise ValueError(f"text.position='rotary' needs an even head dimension, got "
                             f"width/heads = {self.width}/{self.heads}")
        if not isinstance(self.rotary_base, (int, float)) or self.rotary_base <= 1:
            raise ValueError(f"text.rotary_base must be a number > 1, got {self.rotary_base!r}")

    @property
    def position_count(self) -> int:
        """Rows of the learned position table."""
        return self.context_length + (1 if self.class_token_position else 0)


DECODER_LAYOUTS = ("fused", "split")


@dataclass(kw_only=True)
class DecoderConfig:
    """CoCa multimodal decoder: causal self-attention + cross-attention to image tokens, then a
    linear head over the vocabulary.

    Its width is the text tower's width (it continues the text tower's hidden states).
    layout: "fused" (cliplab's: one block per layer with self-attention, cross-attention and one MLP)
    or "split" (open_clip's: per layer a self-attention block and a cross-attention block, each
    with its own MLP, the image tokens normalised by the cross-attention block's own LayerNorm).
    mlp_width, activation, norm_eps, layer_scale ("split" only), dropout: see the blocks.
    vocab_size: the ids the head predicts (None: the text tower's vocab_size). open_clip's CoCa
    takes it from text_cfg.vocab_size, which a Hugging Face text tower does not read
    (coca_roberta-ViT-B-32: 49408 against RoBERTa's 50265 ids).
    """

    layers: int
    heads: int = 8
    layout: str = "fused"
    mlp_ratio: float = 4.0
    mlp_width: int | None = None
    activation: str = "gelu"
    norm_eps: float = 1e-5
    layer_scale: float | None = None
    dropout: float = 0.0
    vocab_size: int | None = None

    def __post_init__(self) -> None:
        check_positive_int("decoder.layers", self.layers)
        if self.vocab_size is not None:
            check_positive_int("decoder.vocab_size", self.vocab_size)
        check_positive_int("decoder.heads", self.heads)
        check_choice("decoder.layout", self.layout, DECODER_LAYOUTS)
        check_block_options("decoder", self)
        if self.layer_scale is not None and self.layout == "fused":
            raise ValueError("decoder.layer_scale applies to layout='split' only")
