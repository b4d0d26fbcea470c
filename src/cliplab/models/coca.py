"""CoCa: CLIP's contrastive towers plus a multimodal decoder that captions the image.

forward returns open_clip's CoCa dict (a dict whatever `output_dict` says, as open_clip's CoCa does),
consumed by `CoCaLoss`: contrastive features plus next-token `logits` [B, T-1, V] and `labels`
[B, T-1] (padding in labels carries pad_id, to be ignored). `encode_image` / `encode_text` return
unit-norm features unless told `normalize=False`: open_clip's defaults for CoCa (CLIP's is False).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cliplab.models.clip import CLIP
from cliplab.models.config import ModelConfig
from cliplab.models.towers import MultimodalDecoder

GENERATION_STRATEGIES = ("greedy", "top_k")


class CoCa(CLIP):
    """CLIP + `decoder` (a MultimodalDecoder over the text tower's hidden states and image tokens)."""

    def __init__(self, config: ModelConfig, *, output_dict: bool = False):
        super().__init__(config, output_dict=output_dict)
        self.decoder = MultimodalDecoder(config.decoder, width=config.text.width,
                                         image_width=self.vision_tower.token_width,
                                         vocab_size=config.decoder_vocab_size)

    # open_clip's CoCa normalises by default (its CLIP does not): so does this one.
    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """images [B, 3, S, S] float -> image_features [B, E], unit norm unless normalize=False."""
        return super().encode_image(images, normalize=normalize)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """tokens [B, T] long -> text_features [B, E], unit norm unless normalize=False."""
        return super().encode_text(tokens, normalize=normalize)

    def _encode_image_both(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (unit-norm image_features [B, E], image tokens [B, P, W_v]) from one tower pass."""
        with self._image_context():
            pooled, image_tokens = self.vision_tower.forward_features(images)
            image_features = self.image_projection(pooled)
        return F.normalize(image_features, dim=-1), image_tokens

    def forward(self, images: torch.Tensor, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        """images [B, 3, S, S], tokens [B, T] -> {"image_features" [B, E], "text_features" [B, E]
        (unit norm), "logits" [B, T-1, V] float, "labels" [B, T-1] long (= tokens[:, 1:]),
        "logit_scale" 0-d (exponentiated)}."""
        image_features, image_tokens = self._encode_image_both(images)
        with self._text_context():
            pooled, text_hidden, _ = self.text_tower.forward_features(tokens)
            text_features = self.text_projection(pooled)
        logits = self.decoder(text_hidden[:, :-1], image_tokens)
        return {
            "image_features": image_features,
            "text_features": F.normalize(text_features, dim=-1),
            "logits": logits,
            "labels": tokens[:, 1:].long(),
            "logit_scale": self.logit_scale.exp(),
        }

    def token_columns_read(self, tokens: torch.Tensor) -> int:
        """T: the captioning logits and labels read every column."""
        return tokens.shape[1]

    def fsdp_units(self) -> list[nn.Module]:
        """The towers' units (`CLIP.fsdp_units`), then each decoder layer."""
        return super().fsdp_units() + list(self.decoder.transformer.blocks)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        super().set_grad_checkpointing(enable)
        self.decoder.set_grad_checkpointing(enable)

    @torch.no_grad()
    def generate(self, images: torch.Tensor, tokenizer=None, *, sot_id: int | None = None,
                 eot_id: int | None = None, max_length: int | None = None, strategy: str = "greedy",
                 top_k: int = 50, temperature: float = 1.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Caption images [B, 3, S, S] -> token ids Long[B, L], L <= max_length.

        Each row starts with start-of-text and stops at end-of-text (rows that finish early are
        padded with pad_id; a row that reaches max_length has no end-of-text). Ids come from
        `tokenizer` (anything with sot_id / eot_id) or from sot_id / eot_id. strategy "greedy"
        takes the most likely token; "top_k" samples among the top_k most likely after dividing the
        logits by temperature, drawing from `generator`. Start-of-text and padding are never
        generated. Decode with `tokenizer.batch_decode`. Runs in eval mode, restores the mode after.
        """
        if tokenizer is not None:
            sot_id = tokenizer.sot_id if sot_id is None else sot_id
            eot_id = tokenizer.eot_id if eot_id is None else eot_id
        if sot_id is None or eot_id is None:
            raise ValueError("generate needs a tokenizer or both sot_id and eot_id")
        vocab_size, context_length = self.config.decoder_vocab_size, self.config.text.context_length
        pad_id = self.config.text.pad_id
        for name, value in (("sot_id", sot_id), ("eot_id", eot_id)):
            if not isinstance(value, int) or not 0 <= value < vocab_size:
                raise ValueError(f"{name} must be an int in [0, {vocab_size}), got {value!r}")
        max_length = context_length if max_length is None else max_length
        if not isinstance(max_length, int) or not 2 <= max_length <= context_length:
            raise ValueError(f"max_length must be an int in [2, context_length={context_length}], "
                             f"got {max_length!r}")
        if strategy not in GENERATION_STRATEGIES:
            raise ValueError(f"strategy must be one of {GENERATION_STRATEGIES}, got {strategy!r}")
        if not isinstance(top_k, int) or top_k < 1:
            raise ValueError(f"top_k must be a positive int, got {top_k!r}")
        if not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")

        was_training = self.training
        self.eval()
        try:
            image_tokens = self.vision_tower.forward_tokens(images)
            batch = image_tokens.shape[0]
            tokens = torch.full((batch, 1), sot_id, dtype=torch.long, device=image_tokens.device)
            finished = torch.zeros(batch, dtype=torch.bool, device=image_tokens.device)
            for _ in range(max_length - 1):
                text_hidden = self.text_tower.forward_tokens(tokens)
                logits = self.decoder(text_hidden, image_tokens)[:, -1].float()  # [B, V]
                logits[:, [sot_id, pad_id]] = float("-inf")
                next_tokens = self._choose_next(logits, strategy, top_k, temperature, generator)
                next_tokens = torch.where(finished, torch.full_like(next_tokens, pad_id), next_tokens)
                tokens = torch.cat((tokens, next_tokens.unsqueeze(1)), dim=1)
                finished |= next_tokens == eot_id
                if bool(finished.all()):
                    break
            return tokens
        finally:
            self.train(was_training)

    @staticmethod
    def _choose_next(logits: torch.Tensor, strategy: str, top_k: int, temperature: float,
                     generator: torch.Generator | None) -> torch.Tensor:
        """logits [B, V] -> next token ids Long[B]."""
        if strategy == "greedy":
            return logits.argmax(dim=-1)
        top_values, top_indices = logits.topk(min(top_k, logits.shape[-1]), dim=-1)
        probabilities = torch.softmax(top_values / temperature, dim=-1)
        choice = torch.multinomial(probabilities, 1, generator=generator)  # [B, 1]
        return top_indices.gather(1, choice).squeeze(1)
