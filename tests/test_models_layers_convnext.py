"""ConvNeXt's layers against timm 1.0.31's: the block (channels-last in, channels-last out), the
downsampling layer and LayerNorm2d."""

import torch

from cliplab.models.layers.convnext import ConvNextBlock, convnext_downsample
from cliplab.models.layers.norm2d import LayerNorm2d
from reference_libraries import timm

NAMES = {"depthwise": "conv_dw", "mlp.fc.": "mlp.fc1.", "mlp.proj.": "mlp.fc2.", "scale.gamma": "gamma"}


def test_the_block_is_timms_and_keeps_channels_last():
    theirs = timm().models.convnext.ConvNeXtBlock(16, ls_init_value=0.5).eval()
    ours = ConvNextBlock(16, layer_scale=0.5).eval()
    with torch.no_grad():
        for name, parameter in ours.named_parameters():
            for old, new in NAMES.items():
                name = name.replace(old, new)
            parameter.copy_(theirs.get_parameter(name) + torch.randn(parameter.shape) * 0.1)
            theirs.get_parameter(name).copy_(parameter)
        x = torch.randn(2, 16, 9, 9)
        assert torch.equal(ours(x), theirs(x))
        channels_last = ours(x.contiguous(memory_format=torch.channels_last))
    assert channels_last.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(channels_last, ours(x), rtol=1e-6, atol=1e-6)


def test_downsampling_and_layer_norm_2d():
    layers = timm().layers
    x = torch.randn(2, 8, 6, 6)
    norm = LayerNorm2d(8, eps=1e-6)
    torch.nn.init.normal_(norm.weight)
    theirs = layers.LayerNorm2d(8)
    theirs.load_state_dict(norm.state_dict())
    assert torch.equal(norm(x), theirs(x))
    assert isinstance(norm, torch.nn.LayerNorm)  # locking finds it among the norms
    assert convnext_downsample(8, 16)(x).shape == (2, 16, 3, 3)
