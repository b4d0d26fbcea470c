"""Tower family "hf_text": a Hugging Face transformers text model with open_clip's pooler, as open_clip's
`HFTextEncoder` builds it (the multilingual CLIPs: XLM-RoBERTa, mT5 and NLLB text towers; RoBERTa).

The tower is transformers' own model (`towers.hf_text_tower`), built from the model's Hugging Face
config, which the cliplab config carries whole (`hf_config`, the parsed config.json), so a saved
model needs nothing beside it. `transformers` is the optional extra `pip install 'cliplab[hf]'`:
without it, building such a tower is one line saying so (reading its config is not).

    open_clip text_cfg                         HfTextConfig
    hf_model_name                              hf_model_name; its config.json -> hf_config (found
                                               as `cliplab.models.hf_text_files` says)
    hf_pooler_type (default mean_pooler;       pooler "mean_pooler", "cls_pooler",
      null: the model type's)                  "cls_last_hidden_state_pooler"
    hf_proj_type (default mlp)                 projection "mlp", "linear"; null (width = embed_dim)
                                               "none"
    hf_model_pretrained (default true)         hf_model_pretrained; false when the weights come
                                               from a checkpoint (open_clip's factory does the same)
    context_length (default 77)                context_length (the tokenizer's length)
    hf_tokenizer_name                          (the tokenizer's, see cliplab.data.tokenizer_files)

hf_model_pretrained: a tower built on a real device starts from the pretrained weights of
`hf_model_name` (transformers' `from_pretrained` of the local directory or the Hugging Face cache
snapshot; cliplab never downloads them); when they are not there, the build stops with a
`MissingModelFilesError` naming the files and `text.hf_model_pretrained=false` (a randomly
initialised tower, transformers' initialisation) rather than training a random tower unawares. A
meta-device build reads nothing (a checkpoint fills it); FSDP2's sharded build of a fresh model
(`initialisers_on_meta`) cannot load them and refuses. Loaded checkpoints never read them.

    cliplab                                    open_clip (CustomTextCLIP / CoCa, under "text.")
    text_tower.transformer.*                   text.transformer.* (transformers' own names)
    text_projection.weight ("linear")          text.proj.weight
    text_projection.{0,2}.weight ("mlp")       text.proj.{0,2}.weight (Linear, GELU, Linear; no bias)

Locking counts groups as open_clip's `HFTextEncoder.lock`: the input embeddings, then each encoder
layer (`unlocked_layers` counts those), the final norm and pooling layer with the last layer; the
projection is never frozen (open_clip's lock leaves `text.proj` trainable), and freeze_layer_norm=False
leaves exactly the modules named "LayerNorm" trainable. open_clip 3.3.0 itself fails to lock an
M2M100 or BERT tower with `unlocked_layers` > 0 (its table has no layer names for them); cliplab
counts their layers the same way. FSDP2 units: the encoder layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cliplab.errors import UnsupportedArchitectureError, UserError
from cliplab.models.families.open_clip_sections import TEXT_KEYS, check_known
from cliplab.models.families.spec import OpenClipContext, OpenClipForm, TowerFamily
from cliplab.models.hf_text_files import HF_CONFIG_FILE, find_hf_config, find_hf_weights, require_transformers
from cliplab.models.key_rules import KeyRule, rule
from cliplab.models.meta_build import meta_values_recorded, to_meta_with_values
from cliplab.models.tower_configs import check_bool, check_choice, check_positive_int
from cliplab.models.towers.hf_text_tower import HF_ARCHITECTURES, POOLERS, HfTextTower, build_hf_model

KIND = "hf_text"
PROJECTIONS = ("mlp", "linear", "none")
OPEN_CLIP_PROJECTIONS = {"mlp": "mlp", "linear": "linear", None: "none"}
OPEN_CLIP_CONTEXT_LENGTH = 77  # CLIPTextCfg's default, what open_clip's tokenizer makes
# RoBERTa-style models number positions from pad_token_id + 1 (the first rows are never used).
OFFSET_POSITIONS = ("roberta", "xlm-roberta")


@dataclass(kw_only=True)
class HfTextConfig:
    """A transformers text model with open_clip's pooler (see the module docstring).

    hf_model_name: the model's name (a Hugging Face repository id or a local directory), what an
    open_clip export names and where pretrained weights come from. hf_config: its config.json,
    parsed (the architecture; `model_type` one of `HF_ARCHITECTURES`). hf_model_pretrained: a
    fresh tower starts from the pretrained weights of hf_model_name (False: transformers' random
    initialisation). pooler: one of `POOLERS`. projection: into the shared latent, "mlp" (open_clip's
    Linear, GELU, Linear of hidden width (W + E) // 2, no biases), "linear" (no bias) or "none".
    context_length: the token sequences' length (the tokenizer's; within the model's positions).
    """

    kind: str = KIND
    hf_model_name: str
    hf_config: dict
    hf_model_pretrained: bool = False
    pooler: str = "mean_pooler"
    projection: str = "mlp"
    context_length: int = OPEN_CLIP_CONTEXT_LENGTH

    def __post_init__(self) -> None:
        check_choice("text.kind", self.kind, (KIND,))
        if not isinstance(self.hf_model_name, str) or not self.hf_model_name:
            raise ValueError(f"text.hf_model_name must be a non-empty str, got {self.hf_model_name!r}")
        if not isinstance(self.hf_config, dict):
            raise ValueError(f"text.hf_config must be a dict (the model's config.json), got "
                             f"{type(self.hf_config).__name__}")
        check_choice("text.hf_config.model_type", self.hf_config.get("model_type"), tuple(HF_ARCHITECTURES))
        architecture = HF_ARCHITECTURES[self.model_type]
        for key in (architecture.width, architecture.layers, "vocab_size"):
            check_positive_int(f"text.hf_config.{key}", self.hf_config.get(key))
        if not isinstance(self.pad_id, int) or not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"text.hf_config.pad_token_id must be an int in [0, vocab_size={self.vocab_size}), "
                             f"got {self.pad_id!r}")
        check_bool("text.hf_model_pretrained", self.hf_model_pretrained)
        check_choice("text.pooler", self.pooler, POOLERS)
        check_choice("text.projection", self.projection, PROJECTIONS)
        check_positive_int("text.context_length", self.context_length)
        positions = self.positions
        if positions is not None and self.context_length > positions:
            raise ValueError(f"text.context_length ({self.context_length}) exceeds the {positions} positions of "
                             f"the model (text.hf_config.max_position_embeddings)")

    @property
    def model_type(self) -> str:
        return self.hf_config["model_type"]

    @property
    def width(self) -> int:
        return self.hf_config[HF_ARCHITECTURES[self.model_type].width]

    @property
    def layers(self) -> int:
        return self.hf_config[HF_ARCHITECTURES[self.model_type].layers]

    @property
    def vocab_size(self) -> int:
        return self.hf_config["vocab_size"]

    @property
    def pad_id(self) -> int:
        return self.hf_config.get("pad_token_id")

    @property
    def causal(self) -> bool:
        """These are bidirectional encoders."""
        return False

    @property
    def positions(self) -> int | None:
        """The longest sequence the model's learned positions take (None: no limit, mT5's
        relative positions and M2M100's sinusoidal table, which grows)."""
        if self.model_type in OFFSET_POSITIONS:
            return self.hf_config.get("max_position_embeddings", 512) - self.pad_id - 1
        if self.model_type == "bert":
            return self.hf_config.get("max_position_embeddings", 512)
        return None


def build_hf_text_tower(config: HfTextConfig) -> HfTextTower:
    """The tower of `config`: transformers' model from the config (randomly initialised), or from
    the pretrained weights of `hf_model_name` when `hf_model_pretrained` (see the module
    docstring). On the meta device nothing is read or initialised, except in a build whose values
    are recorded shard by shard (FSDP2's, `initialisers_on_meta`): transformers' initialisation
    cannot be replayed there, so the model is built on the CPU (in full, once, on every rank) and
    handed over by copies the recorder keeps its rows of; transformers' loading of pretrained
    weights cannot run inside such a recorder, which is refused."""
    transformers = require_transformers(f"the text tower {config.hf_model_name!r} (text.kind='{KIND}')")
    on_meta = torch.empty(0).is_meta
    recorded = on_meta and meta_values_recorded()
    where = f"text.hf_model_name={config.hf_model_name!r} with text.hf_model_pretrained=true"
    if recorded and config.hf_model_pretrained:
        raise UserError(f"{where}: a sharded (FSDP2) build of a fresh model cannot load the Hugging Face weights; "
                        "start from a checkpoint that holds them (--pretrained), or set text.hf_model_pretrained=false")
    reads_weights = config.hf_model_pretrained and not on_meta
    pretrained_from = find_hf_weights(config.hf_model_name, where) if reads_weights else None
    if recorded:
        with torch.device("cpu"):
            transformer = build_hf_model(transformers, config)
        return HfTextTower(config, to_meta_with_values(transformer))
    return HfTextTower(config, build_hf_model(transformers, config, pretrained_from))


def recognises(text: dict) -> bool:
    return bool(text.get("hf_model_name"))


def read(text: dict, context: OpenClipContext) -> HfTextConfig:
    """As open_clip's `HFTextEncoder` reads `text_cfg`; the model's config.json found as
    `cliplab.models.hf_text_files` says (MissingModelFilesError when it is nowhere)."""
    check_known(text, TEXT_KEYS, "text_cfg")
    name = text["hf_model_name"]
    where = f"text_cfg.hf_model_name={name!r}"
    values = find_hf_config(name, tuple(HF_ARCHITECTURES), context.directory, where)
    model_type = values.get("model_type")
    if model_type not in HF_ARCHITECTURES:
        raise UnsupportedArchitectureError(f"{where} is a {model_type!r} model; the Hugging Face text tower family "
                                           f"'{KIND}' builds open_clip's model types {tuple(HF_ARCHITECTURES)}")
    pooler = text.get("hf_pooler_type", "mean_pooler")
    pooler = HF_ARCHITECTURES[model_type].default_pooler if pooler is None else pooler
    if pooler not in POOLERS:
        raise UnsupportedArchitectureError(f"text_cfg.hf_pooler_type={pooler!r}: the family '{KIND}' builds "
                                           f"{POOLERS} (open_clip's max_pooler raises on every input)")
    proj = text.get("hf_proj_type", "mlp")
    if proj not in OPEN_CLIP_PROJECTIONS:
        raise UnsupportedArchitectureError(f"text_cfg.hf_proj_type={proj!r}: open_clip builds 'mlp', 'linear' "
                                           "or, with the model's width equal to embed_dim, null (none)")
    config = HfTextConfig(hf_model_name=name, hf_config=values, pooler=pooler,
                          projection=OPEN_CLIP_PROJECTIONS[proj],
                          hf_model_pretrained=bool(text.get("hf_model_pretrained", True))
                          and not context.weights_from_checkpoint,
                          context_length=text.get("context_length", OPEN_CLIP_CONTEXT_LENGTH))
    if config.projection == "none" and config.width != context.embed_dim:
        raise UnsupportedArchitectureError(f"text_cfg.hf_proj_type=None with the model's width {config.width} "
                                           f"and embed_dim {context.embed_dim}: open_clip builds no projection")
    return config


def write(text: HfTextConfig, context: OpenClipContext) -> dict:
    """The section; the model's config.json is not part of it (an open_clip export writes it
    beside, `cliplab.pretrained.export`)."""
    return {"hf_model_name": text.hf_model_name, "hf_tokenizer_name": text.hf_model_name,
            "hf_model_pretrained": text.hf_model_pretrained, "hf_pooler_type": text.pooler,
            "hf_proj_type": None if text.projection == "none" else text.projection,
            "context_length": text.context_length}


def open_clip_rules(text: HfTextConfig, prefix: str) -> list[KeyRule]:
    return [rule(r"text_tower\.transformer\.(.+)", prefix + "transformer.{0}"),
            rule(r"text_projection\.(.+)", prefix + "proj.{0}")]


def fsdp_units(tower: HfTextTower) -> list[nn.Module]:
    return tower.layers


def lock_groups(tower: HfTextTower) -> list[list[Any]]:
    return tower.parameter_groups()


FAMILY = TowerFamily(
    kind=KIND, side="text", config=HfTextConfig, build=build_hf_text_tower,
    summary="a Hugging Face transformers text model (RoBERTa, XLM-R, mT5's and M2M100's encoders, BERT) with "
            "open_clip's pooler, as open_clip's HFTextEncoder (needs cliplab[hf])",
    lock_groups=lock_groups, fsdp_units=fsdp_units,
    lora_targets=lambda text: HF_ARCHITECTURES[text.model_type].lora_targets,
    # HF towers ignore open_clip's quick_gelu flag.
    open_clip=OpenClipForm(recognises=recognises, read=read, write=write, activation=lambda text: None,
                           rules=open_clip_rules, custom_text=True,
                           side_files=lambda text: {HF_CONFIG_FILE: text.hf_config}),
    projection_locked=lambda text: False,
)
