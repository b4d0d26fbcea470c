"""CoCa's multimodal decoder: text hidden states attend to image tokens, then predict next tokens."""

from __future__ import annotations

import torch
from torch import nn

from cliplab.models.tower_configs import DecoderConfig
from cliplab.models.layers import BlockStack, DecoderBlock, SplitDecoderLayer, init_transformer_weights


class MultimodalDecoder(nn.Module):
    """text hidden [B, T, W] + image tokens [B, P, Wv] -> next-token logits [B, T, V].

    Layers of causal self-attention, cross-attention to the image tokens and MLPs (arranged as
    `config.layout` says); final norm and a linear head over the vocabulary. Position t only sees
    text positions <= t, so its logits predict token t + 1.
    """

    def __init__(self, config: DecoderConfig, width: int, image_width: int, vocab_size: int):
        super().__init__()
        self.config = config
        self.width = width
        options = {"mlp_width": config.mlp_width, "activation": config.activation, "norm_eps": config.norm_eps}
        if config.layout == "split":
            layers = [SplitDecoderLayer(width, image_width, config.heads, config.mlp_ratio, config.dropout,
                                        layer_scale=config.layer_scale, **options)
                      for _ in range(config.layers)]
        else:
            layers = [DecoderBlock(width, image_width, config.heads, config.mlp_ratio, config.dropout, **options)
                      for _ in range(config.layers)]
        self.transformer = BlockStack(layers)
        self.norm_final = nn.LayerNorm(width, eps=config.norm_eps)
        self.lm_head = nn.Linear(width, vocab_size, bias=False)
        init_transformer_weights(self.transformer, width)
        nn.init.normal_(self.lm_head.weight, std=width ** -0.5)

    def forward(self, text_hidden: torch.Tensor, image_tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(text_hidden, context=image_tokens)
        return self.lm_head(self.norm_final(hidden))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.transformer.grad_checkpointing = enable
