"""ViTamin's convolutional stem and GeGLU MLP against timm 1.0.31's own modules (same tensor names,
random weights): equal outputs, fp32, 1e-5 relative."""

import torch

from cliplab.models.layers.geglu import GeGLU
from cliplab.models.layers.mbconv import STRIDE, MbConvStages
from reference_libraries import assert_relative_close, randomize_, timm


def test_the_mbconv_stages_are_timms():
    vitamin = timm().models.vitamin
    theirs = randomize_(vitamin.MbConvStages(vitamin.VitCfg(embed_dim=(8, 16, 24), depths=(2, 3, 1), stem_width=8,
                                                            conv_cfg=vitamin.VitConvCfg(norm_layer="layernorm2d",
                                                                                        norm_eps=1e-6))), seed=0)
    ours = MbConvStages((8, 16), (2, 3), 24).eval()
    ours.load_state_dict(theirs.state_dict())
    images = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        features = ours(images)
        assert features.shape == (2, 24, 48 // STRIDE, 48 // STRIDE)
        assert_relative_close(features, theirs(images))


def test_geglu_is_timms_gated_mlp_with_its_input_norm():
    theirs = randomize_(timm().models.vitamin.GeGluMlp(16, 24), seed=2)
    ours = GeGLU(16, 24).eval()
    ours.load_state_dict({name.replace("w0", "gate").replace("w1", "fc").replace("w2", "proj"): tensor
                          for name, tensor in theirs.state_dict().items()})
    x = torch.randn(3, 5, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert_relative_close(ours(x), theirs(x))
