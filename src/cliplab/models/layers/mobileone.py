"""MobileOne's re-parameterisable convolutions (FastViT, MobileCLIP), in timm's parameter layout.

At training time a block sums parallel linear branches, each a convolution followed by its own
BatchNorm (or a BatchNorm alone for the identity); at inference the sum is one convolution with a
bias, because every branch is linear in x once BatchNorm uses its running statistics:

    BN(conv_K(x)) = conv_{K * g/s}(x) + (beta - mu * g/s),   s = sqrt(var + eps), g = BN's weight

so K_folded = sum over branches of (K_b * g_b/s_b), a 1x1 kernel padded to k x k at its centre,
the identity a k x k kernel with a 1 at the centre of each channel's own input; the bias is the
sum of the branches' (beta_b - mu_b g_b/s_b). `reparameterize()` replaces the branches by that
convolution (`reparam_conv`) in place: in eval mode the outputs are unchanged up to float rounding.
In training mode the branches normalise with batch statistics, which no single convolution can do,
so a block is folded for inference only; a block built `reparameterized=True` has the folded
layout from the start (timm's `inference_mode`), to load folded weights. The BatchNorms are
`FreezableBatchNorm2d`s, whose statistics a locked tower can keep (`--lock-image-freeze-bn-stats`).

Shapes: x [B, C_in, H, W] -> [B, C_out, H', W'] with H' = (H + 2p - k) // stride + 1, p = k // 2
(timm's symmetric padding for odd kernels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cliplab.models.layers.batch_norm import FreezableBatchNorm2d


def fold_batch_norm(kernel: torch.Tensor, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """conv(kernel) then `norm` in eval mode as one conv: (kernel [O, I/g, k, k] scaled per output
    channel, bias [O]) (module docstring)."""
    scale = norm.weight / (norm.running_var + norm.eps).sqrt()
    return kernel * scale.reshape(-1, 1, 1, 1), norm.bias - norm.running_mean * scale


def identity_kernel(channels: int, groups: int, kernel_size: int, like: torch.Tensor) -> torch.Tensor:
    """The k x k grouped kernel [C, C / groups, k, k] whose convolution is the identity (dtype and
    device of `like`)."""
    per_group = channels // groups
    kernel = torch.zeros(channels, per_group, kernel_size, kernel_size, dtype=like.dtype, device=like.device)
    centre = kernel_size // 2
    kernel[torch.arange(channels), torch.arange(channels) % per_group, centre, centre] = 1
    return kernel


def pad_kernel(kernel: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """kernel [O, I, k', k'] zero-padded around its centre to [O, I, k, k] (k - k' even)."""
    pad = (kernel_size - kernel.shape[-1]) // 2
    return F.pad(kernel, [pad] * 4)


def folded_conv(in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int) -> nn.Conv2d:
    """The inference convolution of a re-parameterisable block (bias, padding k // 2)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                     groups=groups, bias=True)


def replace_with_folded(module: nn.Module, kernel: torch.Tensor, bias: torch.Tensor, branches: tuple[str, ...]
                        ) -> None:
    """Set `module.reparam_conv` (already built, on the branches' device) to (kernel, bias) and drop
    the `branches` submodules (None)."""
    with torch.no_grad():
        module.reparam_conv.weight.copy_(kernel)
        module.reparam_conv.bias.copy_(bias)
    for name in branches:
        setattr(module, name, None)


class ConvBatchNorm(nn.Module):
    """A conv without bias, then BatchNorm (timm's `ConvNormAct` without activation; `conv`, `bn`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                              groups=groups, bias=False)
        self.bn = FreezableBatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(kernel, bias) of this branch as one convolution (eval-mode BatchNorm)."""
        return fold_batch_norm(self.conv.weight, self.bn)


def squeeze_channels(channels: int, ratio: float, divisor: int) -> int:
    """timm's `make_divisible(channels * ratio, divisor, round_limit=0)`: the nearest multiple of
    `divisor` (at least `divisor`)."""
    value = channels * ratio
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


class SqueezeExcite(nn.Module):
    """x [B, C, H, W] -> x * sigmoid(fc2(relu(fc1(mean over H, W)))), fc1/fc2 1x1 convs with bias
    through `hidden` channels (timm's `SEModule`)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(squeezed)


class MobileOneBlock(nn.Module):
    """act(se(branches(x))): x [B, C_in, H, W] -> [B, C_out, H / stride, W / stride].

    Branches (timm's names): `conv_kxk` (`conv_branches` k x k ConvBatchNorms), `conv_scale` (a 1x1
    ConvBatchNorm, when k > 1 and `scale_branch`), `identity` (a BatchNorm of x, when the shape is
    kept); folded: `reparam_conv`. se: a squeeze-excite after the sum (timm's `rd_divisor=1`);
    activation: GELU or none.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, groups: int = 1,
                 squeeze_excite: bool = False, activation: bool = True, scale_branch: bool = True,
                 conv_branches: int = 1, reparameterized: bool = False):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.groups = stride, groups
        self.se = (SqueezeExcite(out_channels, squeeze_channels(out_channels, 1 / 16, 1)) if squeeze_excite
                   else nn.Identity())
        if reparameterized:
            self.reparam_conv = folded_conv(in_channels, out_channels, kernel_size, stride, groups)
            self.identity = self.conv_kxk = self.conv_scale = None
        else:
            self.reparam_conv = None
            self.identity = (FreezableBatchNorm2d(in_channels) if in_channels == out_channels and stride == 1
                             else None)
            self.conv_kxk = (nn.ModuleList([ConvBatchNorm(in_channels, out_channels, kernel_size, stride, groups)
                                            for _ in range(conv_branches)]) if conv_branches else None)
            self.conv_scale = (ConvBatchNorm(in_channels, out_channels, 1, stride, groups)
                               if kernel_size > 1 and scale_branch else None)
        self.act = nn.GELU() if activation else nn.Identity()

    def branches(self, x: torch.Tensor) -> torch.Tensor:
        """The sum of the branches (or the folded conv): [B, C_out, H', W']."""
        if self.reparam_conv is not None:
            return self.reparam_conv(x)
        total = self.conv_scale(x) if self.conv_scale is not None else 0
        if self.identity is not None:
            total = total + self.identity(x)
        for branch in self.conv_kxk or ():
            total = total + branch(x)
        return total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.se(self.branches(x)))

    def folded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(kernel [C_out, C_in / groups, k, k], bias [C_out]) of the branches as one conv."""
        if self.reparam_conv is not None:
            return self.reparam_conv.weight, self.reparam_conv.bias
        reference = next(self.parameters())
        kernel = torch.zeros(self.out_channels, self.in_channels // self.groups, self.kernel_size, self.kernel_size,
                             dtype=reference.dtype, device=reference.device)
        bias = torch.zeros(self.out_channels, dtype=reference.dtype, device=reference.device)
        parts = [branch.folded() for branch in self.conv_kxk or ()]
        if self.conv_scale is not None:
            scale_kernel, scale_bias = self.conv_scale.folded()
            parts.append((pad_kernel(scale_kernel, self.kernel_size), scale_bias))
        if self.identity is not None:
            parts.append(fold_batch_norm(identity_kernel(self.in_channels, self.groups, self.kernel_size, kernel),
                                         self.identity))
        for part_kernel, part_bias in parts:
            kernel, bias = kernel + part_kernel, bias + part_bias
        return kernel, bias

    def reparameterize(self) -> None:
        """Fold the branches into `reparam_conv` (module docstring); nothing when already folded."""
        if self.reparam_conv is not None:
            return
        kernel, bias = self.folded()
        self.reparam_conv = folded_conv(self.in_channels, self.out_channels, self.kernel_size, self.stride,
                                        self.groups).to(kernel.device, kernel.dtype)
        replace_with_folded(self, kernel, bias, ("identity", "conv_kxk", "conv_scale"))


class LargeKernelConv(nn.Module):
    """RepLKNet's large-kernel conv (timm's `ReparamLargeKernelConv`): a k x k ConvBatchNorm
    (`large_conv`) plus a 3x3 one (`small_conv`), then an optional squeeze-excite (timm's
    `rd_ratio=0.25`) and GELU; folded: `reparam_conv`. x [B, C_in, H, W] -> [B, C_out, H / s, W / s].
    """

    SMALL_KERNEL = 3

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int, groups: int,
                 squeeze_excite: bool = False, activation: bool = False, reparameterized: bool = False):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.stride, self.groups = stride, groups
        if reparameterized:
            self.reparam_conv = folded_conv(in_channels, out_channels, kernel_size, stride, groups)
            self.large_conv = self.small_conv = None
        else:
            self.reparam_conv = None
            self.large_conv = ConvBatchNorm(in_channels, out_channels, kernel_size, stride, groups)
            self.small_conv = ConvBatchNorm(in_channels, out_channels, self.SMALL_KERNEL, stride, groups)
        self.se = SqueezeExcite(out_channels, squeeze_channels(out_channels, 0.25, 8)) if squeeze_excite else nn.Identity()
        self.act = nn.GELU() if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.reparam_conv is not None:
            mixed = self.reparam_conv(x)
        else:
            mixed = self.large_conv(x) + self.small_conv(x)
        return self.act(self.se(mixed))

    def reparameterize(self) -> None:
        """Fold both convs into `reparam_conv`; nothing when already folded."""
        if self.reparam_conv is not None:
            return
        large_kernel, large_bias = self.large_conv.folded()
        small_kernel, small_bias = self.small_conv.folded()
        self.reparam_conv = folded_conv(self.in_channels, self.out_channels, self.kernel_size, self.stride,
                                        self.groups).to(large_kernel.device, large_kernel.dtype)
        replace_with_folded(self, large_kernel + pad_kernel(small_kernel, self.kernel_size), large_bias + small_bias,
                            ("large_conv", "small_conv"))


def reparameterize_all(module: nn.Module) -> None:
    """Call `reparameterize()` on every submodule below `module` that has one, parents before their
    children (a parent that folds its children leaves nothing below it to fold)."""
    for child in list(module.children()):
        if hasattr(child, "reparameterize"):
            child.reparameterize()
        reparameterize_all(child)
