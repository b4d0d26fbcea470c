"""SwiGLU against timm 1.0.31's two layouts of it: `SwiGLU` (separate gate and value Linears, the
hidden LayerNorm) and `GluMlp` with SiLU and the gate first (one packed Linear)."""

import torch

from cliplab.models.layers.swiglu import SwiGLU
from reference_libraries import timm


def test_equals_timms_swiglu_with_its_hidden_norm():
    torch.manual_seed(0)
    ours = SwiGLU(8, 12, norm_eps=1e-6)
    reference = timm().layers.SwiGLU(in_features=8, hidden_features=12, norm_layer=timm().layers.LayerNorm)
    torch.nn.init.normal_(ours.norm.weight)
    reference.load_state_dict({"fc1_g.weight": ours.gate.weight, "fc1_g.bias": ours.gate.bias,
                               "fc1_x.weight": ours.fc.weight, "fc1_x.bias": ours.fc.bias,
                               "norm.weight": ours.norm.weight, "norm.bias": ours.norm.bias,
                               "fc2.weight": ours.proj.weight, "fc2.bias": ours.proj.bias})
    x = torch.randn(2, 5, 8)
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-6, atol=1e-7)


def test_equals_timms_packed_glu_mlp_with_the_gate_rows_first():
    torch.manual_seed(1)
    ours = SwiGLU(8, 12)
    assert isinstance(ours.norm, torch.nn.Identity)
    reference = timm().layers.GluMlp(in_features=8, hidden_features=24, act_layer=torch.nn.SiLU, gate_last=False)
    reference.load_state_dict({"fc1.weight": torch.cat((ours.gate.weight, ours.fc.weight)),
                               "fc1.bias": torch.cat((ours.gate.bias, ours.fc.bias)),
                               "fc2.weight": ours.proj.weight, "fc2.bias": ours.proj.bias})
    x = torch.randn(3, 8)
    torch.testing.assert_close(ours(x), reference(x), rtol=1e-6, atol=1e-7)
