"""A Hugging Face transformers text model as a text tower, the way open_clip's `HFTextEncoder` runs
it: the model (for an encoder-decoder model type, its encoder only) on the token ids with the
padding masked, then open_clip's pooler. The projection into the shared latent is the CLIP model's
(`text_projection`), as with every tower.

The model itself is transformers' class for the config's `model_type` (`HF_ARCHITECTURES`, the
model types open_clip 3.3.0 knows), imported when a tower is built: `transformers` is the optional
extra `cliplab[hf]`, and nothing else in cliplab imports it.

Buffers: transformers' text models keep some tensors outside their state dict (RoBERTa's position
and token-type ids, M2M100's sinusoidal position table), which a model built on the meta device and
then filled from a checkpoint, or allocated with `to_empty`, would hold as meta tensors or
uninitialised memory. The tower computes them again, with transformers' own initialisation of
those modules, whenever its tensors move (`_apply`) and before a forward that finds them on meta.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cliplab.models.towers.locking import NORM_TYPES, GroupItem
from cliplab.models.towers.text_transformer import check_tokens


@dataclass(frozen=True)
class HfArchitecture:
    """Where open_clip finds things in a transformers model type (its `arch_dict`, as data).

    width: the config key of the hidden width. layers: the config key of the encoder's layer
    count. layer_list / embeddings: the module paths, inside the tower's transformers model, of
    the encoder layers and of the input embeddings (what open_clip's `HFTextEncoder.lock` counts).
    encoder_decoder: open_clip keeps the encoder only. default_pooler: open_clip's pooler when
    `hf_pooler_type` is null. lora_targets: the layers LoRA adapts by default, as module-name
    suffixes of transformers' own names (attention q, k, v and output, feed-forward in and out).
    """

    width: str
    layers: str
    layer_list: str
    embeddings: str
    encoder_decoder: bool
    default_pooler: str
    lora_targets: tuple[str, ...]


_BERT_LORA_TARGETS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
                      "intermediate.dense", "output.dense")
HF_ARCHITECTURES = {
    "roberta": HfArchitecture("hidden_size", "num_hidden_layers", "encoder.layer", "embeddings", False, "mean_pooler",
                              _BERT_LORA_TARGETS),
    "xlm-roberta": HfArchitecture("hidden_size", "num_hidden_layers", "encoder.layer", "embeddings", False,
                                  "mean_pooler", _BERT_LORA_TARGETS),
    "bert": HfArchitecture("hidden_size", "num_hidden_layers", "encoder.layer", "embeddings", False, "cls_pooler",
                           _BERT_LORA_TARGETS),
    "mt5": HfArchitecture("d_model", "num_layers", "block", "embed_tokens", True, "mean_pooler",
                          ("SelfAttention.q", "SelfAttention.k", "SelfAttention.v", "SelfAttention.o",
                           "DenseReluDense.wi", "DenseReluDense.wi_0", "DenseReluDense.wi_1", "DenseReluDense.wo")),
    "m2m_100": HfArchitecture("d_model", "encoder_layers", "layers", "embed_tokens", True, "cls_pooler",
                              ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc1",
                               "fc2")),
}
# open_clip's poolers that run (its `max_pooler` fills the real tokens, not the padding, and
# raises on every input: masked_fill with an integer mask).
POOLERS = ("mean_pooler", "cls_pooler", "cls_last_hidden_state_pooler")
# The module name open_clip's lock leaves trainable under freeze_layer_norm=False.
LAYER_NORM_NAME = "LayerNorm"


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """hidden [B, T, W] float, mask Long[B, T] (1 for real tokens) -> mean over real tokens [B, W]
    (open_clip's MeanPooler, operation for operation)."""
    return (hidden * mask.unsqueeze(-1)).sum(dim=1) / mask.sum(-1, keepdim=True)


def pool(pooler: str, output: Any, mask: torch.Tensor) -> torch.Tensor:
    """The pooled vector [B, W] of a transformers model output: "mean_pooler" the mean over real
    tokens; "cls_pooler" the model's own pooler output where it has one (BERT / RoBERTa built with
    their pooling layer), else the first token's state; "cls_last_hidden_state_pooler" the first
    token's state."""
    if pooler == "mean_pooler":
        return mean_pool(output.last_hidden_state, mask)
    if pooler == "cls_pooler" and getattr(output, "pooler_output", None) is not None:
        return output.pooler_output
    return output.last_hidden_state[:, 0]


def build_hf_model(transformers: Any, config, pretrained_from=None) -> nn.Module:
    """The transformers module of tower config `config` (an `HfTextConfig`), as open_clip's
    `HFTextEncoder` builds it: `AutoModel` (from the config, or `from_pretrained(pretrained_from)`)
    in float32, the encoder alone for an encoder-decoder type, BERT and RoBERTa with their pooling
    layer exactly under the "cls_pooler"."""
    values = dict(config.hf_config)
    hf_config = transformers.CONFIG_MAPPING[values["model_type"]].from_dict(values)
    architecture = HF_ARCHITECTURES[config.model_type]
    options: dict[str, Any] = {"dtype": torch.float32}
    if not architecture.encoder_decoder:
        options["add_pooling_layer"] = config.pooler == "cls_pooler"
    if pretrained_from is None:
        model = transformers.AutoModel.from_config(hf_config, **options)
    else:
        model = transformers.AutoModel.from_pretrained(str(pretrained_from), config=hf_config, local_files_only=True,
                                                       **options)
    return model.encoder if architecture.encoder_decoder else model


class HfTextTower(nn.Module):
    """tokens Long[B, T] (right-padded with the model's pad_token_id) -> pooled [B, W] and hidden
    states [B, T, W]: transformers' model under open_clip's attention mask (real tokens 1,
    padding 0) and pooler.

    transformer: the transformers module (open_clip's `text.transformer`). Built by
    `build_hf_model`; the family decides where its weights come from (see
    `cliplab.models.families.hf_text`).
    """

    def __init__(self, config, transformer: nn.Module):
        super().__init__()
        self.config = config
        self.width = config.width
        self.transformer = transformer
        # Modules holding buffers outside the state dict (see the module docstring).
        self._derived = [module for module in transformer.modules() if module._non_persistent_buffers_set]
        for module in self._derived:
            if any(True for _ in module.parameters(recurse=False)):
                raise ValueError(f"{type(module).__name__} holds parameters beside its derived buffers; "
                                 "recomputing those buffers would reinitialise them")

    def restore_derived_buffers(self) -> None:
        """Recompute the buffers outside the state dict (transformers' initialisation of their
        modules), on the device and in the dtype they are now."""
        with torch.no_grad():
            for module in self._derived:
                for name in module._non_persistent_buffers_set:
                    buffer = module._buffers[name]
                    if buffer is not None:
                        device = buffer.device if not buffer.is_meta else self._parameter_device()
                        module._buffers[name] = torch.empty(buffer.shape, dtype=buffer.dtype, device=device)
                self.transformer._init_weights(module)

    def _parameter_device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    def _restore_if_left_on_meta(self) -> None:
        """After a meta build filled with real parameters (load_state_dict(assign=True))."""
        if self._parameter_device().type != "meta" and any(
                buffer.is_meta for module in self._derived for buffer in module.buffers(recurse=False)):
            self.restore_derived_buffers()

    def _apply(self, fn, recurse=True):
        self._restore_if_left_on_meta()  # else moving would fail on them
        super()._apply(fn, recurse)
        if self._parameter_device().type != "meta":
            self.restore_derived_buffers()
        return self

    def forward_features(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """tokens [B, T] -> (pooled [B, W], hidden [B, T, W] (the model's last hidden state, every
        position), is_real Bool[B, T])."""
        check_tokens(tokens, self.config.context_length)
        self._restore_if_left_on_meta()
        tokens = tokens.long()
        is_real = tokens != self.config.pad_id
        mask = is_real.long()
        output = self.transformer(input_ids=tokens, attention_mask=mask)
        return pool(self.config.pooler, output, mask), output.last_hidden_state, is_real

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] -> pooled [B, W]."""
        return self.forward_features(tokens)[0]

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, T] -> hidden states [B, T, W]."""
        return self.forward_features(tokens)[1]

    @property
    def layers(self) -> list[nn.Module]:
        """The encoder layers, input to output."""
        return list(self.transformer.get_submodule(HF_ARCHITECTURES[self.config.model_type].layer_list))

    def parameter_groups(self) -> list[list[GroupItem]]:
        """Locking groups as open_clip's `HFTextEncoder.lock` counts them: the input embeddings,
        then each encoder layer; what lies in neither (final norm, pooling layer) goes with the last
        layer, which open_clip freezes only when it freezes everything. Norms are as open_clip names
        them: only a module called "LayerNorm" is a norm whose parameters `freeze_layer_norm=False` leaves
        trainable (BERT's and RoBERTa's; mT5's and M2M100's norms stay frozen), so every other
        parameter is listed bare."""
        architecture = HF_ARCHITECTURES[self.config.model_type]
        paths = [architecture.embeddings, *(f"{architecture.layer_list}.{index}" for index in range(len(self.layers)))]
        owner = {name: index for index, path in enumerate(paths)
                 for name, _ in self.transformer.get_submodule(path).named_parameters(prefix=path)}
        groups: list[list[GroupItem]] = [[] for _ in paths]
        norms_added: set[str] = set()
        for name, parameter in self.transformer.named_parameters():
            group = groups[owner.get(name, len(paths) - 1)]
            parts = name.split(".")
            if LAYER_NORM_NAME not in parts:
                group.append(parameter)
                continue
            norm_path = ".".join(parts[:parts.index(LAYER_NORM_NAME) + 1])
            norm = self.transformer.get_submodule(norm_path)
            if not isinstance(norm, NORM_TYPES):
                raise ValueError(f"{norm_path} is named {LAYER_NORM_NAME} but is a {type(norm).__name__}")
            if norm_path not in norms_added:
                norms_added.add(norm_path)
                group.append(norm)
        return groups

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """transformers' own checkpointing of the encoder layers (non-reentrant: frozen embeddings
        leave the layers' inputs without a gradient)."""
        model = self.transformer
        if not hasattr(model, "activation_checkpointing_enable"):  # older transformers 5 releases
            if enable:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_disable()
        elif enable:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.activation_checkpointing_disable()
