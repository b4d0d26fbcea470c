"""Tiny deterministic stand-ins for a CLIP model, for exact checks of the eval math."""

from __future__ import annotations

import torch


class BagOfTokensModel(torch.nn.Module):
    """encode_text: mean of token embeddings (padding id 0 included); encode_image: flatten @ W.

    Plain lookups and a linear map, so an expected result can be computed by hand in a test.
    """

    def __init__(self, vocab_size: int = 64, image_pixels: int = 3 * 2 * 2, embed_dim: int = 6, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.token_embedding = torch.nn.Parameter(torch.randn(vocab_size, embed_dim, generator=generator))
        self.image_projection = torch.nn.Parameter(torch.randn(image_pixels, embed_dim, generator=generator))
        self.dropout = torch.nn.Dropout(0.5)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.dropout(self.token_embedding[tokens].mean(dim=1))
        return torch.nn.functional.normalize(features, dim=-1) if normalize else features

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        features = self.dropout(images.flatten(1) @ self.image_projection)
        return torch.nn.functional.normalize(features, dim=-1) if normalize else features


class CharacterTokenizer:
    """Characters -> ids (ord % vocab, 0 reserved for padding), padded to `context_length`."""

    def __init__(self, vocab_size: int = 64, context_length: int = 12):
        self.vocab_size = vocab_size
        self.context_length = context_length

    def __call__(self, texts: list[str]) -> torch.Tensor:
        tokens = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [1 + ord(character) % (self.vocab_size - 1) for character in text[: self.context_length]]
            tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return tokens
