"""Parameters the extra objectives add to a model. Each is created only when its term is enabled,
so DistributedDataParallel never meets a parameter without a gradient."""

from __future__ import annotations

import torch
import torch.nn as nn


class MlmHead(nn.Module):
    """Text-tower hidden states -> vocabulary logits: LayerNorm, Linear(width, width), GELU, Linear.

    Applied only to the selected (masked) positions: hidden [M, width] float -> logits [M, vocab].
    """

    def __init__(self, width: int, vocab_size: int):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.transform = nn.Linear(width, width)
        self.activation = nn.GELU()
        self.decoder = nn.Linear(width, vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.activation(self.transform(self.norm(hidden))))


class SimSiamHead(nn.Module):
    """SimSiam projector and predictor on pooled image embeddings.

    projector: [B, E] -> [B, projection_dim], Linear-BN-ReLU-Linear-BN;
    predictor: [B, projection_dim] -> [B, projection_dim], Linear-BN-ReLU-Linear.
    The batch norms are what keep SimSiam from collapsing (its paper, section 4); under DDP they
    normalise per rank unless the trainer converts them with nn.SyncBatchNorm.
    """

    def __init__(self, embed_dim: int, hidden_dim: int, projection_dim: int, predictor_hidden_dim: int):
        super().__init__()
        self.projector = nn.Sequential(
            nn.Linear(embed_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, projection_dim, bias=False), nn.BatchNorm1d(projection_dim),
        )
        self.predictor = nn.Sequential(
            nn.Linear(projection_dim, predictor_hidden_dim, bias=False), nn.BatchNorm1d(predictor_hidden_dim),
            nn.ReLU(inplace=True), nn.Linear(predictor_hidden_dim, projection_dim),
        )

    def forward(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """embeddings: [B, E] -> (projections [B, P], predictions [B, P])."""
        projections = self.projector(embeddings)
        return projections, self.predictor(projections)


class SimClrHead(nn.Module):
    """SimCLR projection head: [B, E] -> [B, projection_dim], Linear-ReLU-Linear."""

    def __init__(self, embed_dim: int, hidden_dim: int, projection_dim: int):
        super().__init__()
        self.projection = nn.Sequential(
            nn.Linear(embed_dim, hidden_dim), nn.ReLU(inplace=True), nn.Linear(hidden_dim, projection_dim),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.projection(embeddings)


class ExtraLatentProjections(nn.Module):
    """The second pair of projections scoring the image-to-text direction (x-clip / CLOOB).

    Linear maps E -> E (no bias) on the model's pooled latents, one per modality, initialised to
    the identity so that at step 0 both directions see the same latents, as with x-clip's copies.
    image_features / text_features: [B, E] -> ([B, E], [B, E]).
    """

    def __init__(self, embed_dim: int):
        super().__init__()
        self.image_projection = nn.Linear(embed_dim, embed_dim, bias=False)
        self.text_projection = nn.Linear(embed_dim, embed_dim, bias=False)
        with torch.no_grad():
            self.image_projection.weight.copy_(torch.eye(embed_dim))
            self.text_projection.weight.copy_(torch.eye(embed_dim))

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image_projection(image_features), self.text_projection(text_features)
