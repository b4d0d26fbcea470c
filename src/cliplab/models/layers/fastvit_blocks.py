"""FastViT's blocks (timm's `fastvit.py` layout): the RepMixer token mixer, the conditional
positional encoding, the convolutional MLP, and the two metaformer blocks built from them.

Feature maps x: [B, C, H, W] float throughout; every block keeps the shape.

    RepMixerBlock    x = x + gamma * (mixer(x) - norm(x))        (RepMixer: depthwise k x k)
                     x = x + gamma2 * mlp(x)
    AttentionBlock   x = x + gamma1 * attention(norm(x))          (over the H*W positions)
                     x = x + gamma2 * mlp(x)
    mlp              fc2(gelu(fc1(BN(depthwise 7x7 conv(x)))))    (1x1 convs fc1, fc2)
    ConditionalPositionEncoding   x + depthwise 7x7 conv(x)      (RepCPE)

RepMixer's `norm` is a MobileOne identity branch (a BatchNorm) and its `mixer` a MobileOne block
without activation, so at inference the whole token mixer is one depthwise conv with bias:
K = I + gamma * (K_mixer - K_norm), b = gamma * (b_mixer - b_norm); the positional encoding folds
the same way (K = I + K_pos). `reparameterize()` folds in place (see `layers.mobileone`); the MLP's
conv + BatchNorm and the attention block's norm stay, as timm leaves them.
"""

from __future__ import annotations

import torch
from torch import nn

from cliplab.models.layers.attention import SelfAttention
from cliplab.models.layers.batch_norm import FreezableBatchNorm2d
from cliplab.models.layers.drop_path import DropPath
from cliplab.models.layers.mobileone import (ConvBatchNorm, MobileOneBlock, folded_conv, identity_kernel,
                                             replace_with_folded)
from cliplab.models.layers.norm2d import LayerNorm2d

ATTENTION_HEAD_WIDTH = 32  # timm's FastViT attention: heads = C / 32
POSITION_KERNEL = 7  # RepCPE's spatial_shape in every FastViT model
MLP_KERNEL = 7


class LayerScale2d(nn.Module):
    """x [B, C, H, W] * gamma [C, 1, 1] (timm's LayerScale2d)."""

    def __init__(self, channels: int, initial_value: float):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((channels, 1, 1), float(initial_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class RepMixer(nn.Module):
    """x + gamma * (mixer(x) - norm(x)), depthwise k x k (module docstring); folded: `reparam_conv`.
    layer_scale: gamma's initial value (None: no scale, gamma = 1)."""

    def __init__(self, channels: int, kernel_size: int, layer_scale: float | None, *, reparameterized: bool = False):
        super().__init__()
        self.channels, self.kernel_size = channels, kernel_size
        if reparameterized:
            self.reparam_conv = folded_conv(channels, channels, kernel_size, 1, channels)
            self.norm = self.mixer = self.layer_scale = None
            return
        self.reparam_conv = None
        self.norm = MobileOneBlock(channels, channels, kernel_size, groups=channels, activation=False,
                                   scale_branch=False, conv_branches=0)
        self.mixer = MobileOneBlock(channels, channels, kernel_size, groups=channels, activation=False)
        self.layer_scale = LayerScale2d(channels, layer_scale) if layer_scale is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reparam_conv is not None:
            return self.reparam_conv(x)
        return x + self.layer_scale(self.mixer(x) - self.norm(x))

    def reparameterize(self) -> None:
        if self.reparam_conv is not None:
            return
        mixer_kernel, mixer_bias = self.mixer.folded()
        norm_kernel, norm_bias = self.norm.folded()
        gamma = (self.layer_scale.gamma.reshape(-1) if isinstance(self.layer_scale, LayerScale2d)
                 else torch.ones_like(mixer_bias))
        identity = identity_kernel(self.channels, self.channels, self.kernel_size, mixer_kernel)
        kernel = identity + gamma.reshape(-1, 1, 1, 1) * (mixer_kernel - norm_kernel)
        self.reparam_conv = folded_conv(self.channels, self.channels, self.kernel_size, 1,
                                        self.channels).to(kernel.device, kernel.dtype)
        replace_with_folded(self, kernel, gamma * (mixer_bias - norm_bias), ("norm", "mixer", "layer_scale"))


class ConditionalPositionEncoding(nn.Module):
    """x + depthwise 7x7 conv with bias (`pos_enc`, timm's RepConditionalPosEnc); folded:
    `reparam_conv`."""

    def __init__(self, channels: int, *, reparameterized: bool = False):
        super().__init__()
        self.channels = channels
        conv = folded_conv(channels, channels, POSITION_KERNEL, 1, channels)
        self.reparam_conv, self.pos_enc = (conv, None) if reparameterized else (None, conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reparam_conv is not None:
            return self.reparam_conv(x)
        return self.pos_enc(x) + x

    def reparameterize(self) -> None:
        if self.reparam_conv is not None:
            return
        weight = self.pos_enc.weight
        kernel = identity_kernel(self.channels, self.channels, POSITION_KERNEL, weight) + weight
        self.reparam_conv = folded_conv(self.channels, self.channels, POSITION_KERNEL, 1,
                                        self.channels).to(weight.device, weight.dtype)
        replace_with_folded(self, kernel, self.pos_enc.bias, ("pos_enc",))


class ConvMlp(nn.Module):
    """fc2(gelu(fc1(conv(x)))): `conv` a depthwise 7x7 ConvBatchNorm, fc1 / fc2 1x1 convs with bias
    through `hidden` channels (timm's ConvMlp)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.conv = ConvBatchNorm(channels, channels, MLP_KERNEL, groups=channels)
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)
        for conv in (self.conv.conv, self.fc1, self.fc2):
            nn.init.trunc_normal_(conv.weight, std=0.02)
        nn.init.zeros_(self.fc1.bias)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.conv(x))))


def _layer_scale(channels: int, initial_value: float | None) -> nn.Module:
    return LayerScale2d(channels, initial_value) if initial_value is not None else nn.Identity()


def _drop_path(probability: float) -> nn.Module:
    return DropPath(probability) if probability else nn.Identity()


class RepMixerBlock(nn.Module):
    """The convolutional metaformer block: `token_mixer` (RepMixer), then x + gamma * mlp(x), the MLP
    branch dropped per sample with probability `drop_path` in training (stochastic depth)."""

    def __init__(self, channels: int, *, kernel_size: int, mlp_ratio: float, layer_scale: float | None,
                 drop_path: float = 0.0, reparameterized: bool = False):
        super().__init__()
        self.token_mixer = RepMixer(channels, kernel_size, layer_scale, reparameterized=reparameterized)
        self.mlp = ConvMlp(channels, int(channels * mlp_ratio))
        self.layer_scale = _layer_scale(channels, layer_scale)
        self.drop_path = _drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.token_mixer(x)
        return x + self.drop_path(self.layer_scale(self.mlp(x)))


class AttentionBlock(nn.Module):
    """The attention metaformer block: x + gamma1 * attention(norm(x)) over the H*W positions
    (heads of width 32, no qkv bias), then x + gamma2 * mlp(x). norm: "batch" (BatchNorm2d) or
    "layer" (LayerNorm2d over the channels, eps 1e-5). drop_path: stochastic depth of both branches."""

    def __init__(self, channels: int, *, mlp_ratio: float, layer_scale: float | None, norm: str,
                 drop_path: float = 0.0):
        super().__init__()
        self.norm = FreezableBatchNorm2d(channels) if norm == "batch" else LayerNorm2d(channels, eps=1e-5)
        self.token_mixer = SelfAttention(channels, channels // ATTENTION_HEAD_WIDTH, qkv_bias=False)
        self.layer_scale_1 = _layer_scale(channels, layer_scale)
        self.mlp = ConvMlp(channels, int(channels * mlp_ratio))
        self.layer_scale_2 = _layer_scale(channels, layer_scale)
        self.drop_path = _drop_path(drop_path)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, C, H, W] -> attention over the H*W positions, [B, C, H, W]."""
        batch, channels, height, width = x.shape
        attended = self.token_mixer(x.flatten(2).transpose(1, 2))  # [B, H*W, C]
        return attended.transpose(1, 2).reshape(batch, channels, height, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.layer_scale_1(self.attend(self.norm(x))))
        return x + self.drop_path(self.layer_scale_2(self.mlp(x)))
