"""The real reference libraries (open_clip 3.3.0, transformers), importable offline here.

open_clip imports torchvision at module level, and torchvision does not import against the CPU
torch on this machine. Its model code and tokenizer never call torchvision, so `open_clip()` puts
minimal stand-ins for the modules it imports into `sys.modules`, imports open_clip, and removes the
stand-ins again (transformers is imported first: its `find_spec("torchvision")` probe fails on a
module without a spec). Nothing here re-implements either library: the stand-ins are empty
placeholders, and every test compares against the real classes.

`reference_mode()` switches off `nn.MultiheadAttention`'s eval fast path, whose fused kernel
differs from packed-linear + SDPA in the last bits; with it off, open_clip's attention is the same
computation as cliplab's up to float reassociation.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import os
import sys
import types
from functools import lru_cache
from pathlib import Path

import pytest
import torch

# scripts/setup.sh installs the oracles --no-deps here, outside the user's environment; the suite and
# the benchmarks that compare against them put it on sys.path (and on PYTHONPATH, for the processes
# they start) by importing this module.
ORACLES = Path(__file__).resolve().parent.parent / "build" / "test-oracles"
if ORACLES.is_dir() and str(ORACLES) not in sys.path:
    sys.path.insert(0, str(ORACLES))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        part for part in (os.environ.get("PYTHONPATH"), str(ORACLES)) if part)

_STAND_IN_MODULES = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional",
                     "torchvision.ops", "torchvision.ops.misc")
_TRANSFORM_NAMES = ("Normalize", "Compose", "RandomResizedCrop", "ToTensor", "Resize", "CenterCrop",
                    "ColorJitter", "Grayscale", "RandomHorizontalFlip", "RandomGrayscale")


class _InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"


def _stand_ins() -> dict[str, types.ModuleType]:
    modules = {name: types.ModuleType(name) for name in _STAND_IN_MODULES}
    transforms = modules["torchvision.transforms"]
    for name in _TRANSFORM_NAMES:
        setattr(transforms, name, type(name, (), {"__init__": lambda self, *args, **kwargs: None}))
    transforms.InterpolationMode = _InterpolationMode
    transforms.functional = modules["torchvision.transforms.functional"]
    modules["torchvision"].transforms = transforms
    modules["torchvision"].ops = modules["torchvision.ops"]
    modules["torchvision.ops"].misc = modules["torchvision.ops.misc"]
    modules["torchvision.ops.misc"].FrozenBatchNorm2d = type("FrozenBatchNorm2d", (torch.nn.Module,), {})
    return modules


@lru_cache(maxsize=1)
def open_clip():
    """The installed open_clip package (skips the test when it is not installed)."""
    pytest.importorskip("transformers")
    try:
        import open_clip as module  # already imported: nothing to stand in for
        return module
    except ImportError:
        pass
    stand_ins = _stand_ins()
    saved = {name: sys.modules.get(name) for name in stand_ins}
    sys.modules.update(stand_ins)
    try:
        module = pytest.importorskip("open_clip")
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    return module


def transformers():
    """The installed transformers package (skips the test when it is not installed)."""
    return pytest.importorskip("transformers")


@contextlib.contextmanager
def reference_mode():
    """Eval-mode references without nn.MultiheadAttention's fused fast path."""
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def open_clip_model(model_cfg: dict) -> torch.nn.Module:
    """open_clip's own model class for an open_clip `model_cfg` (CLIP, CustomTextCLIP or CoCa)."""
    library = open_clip()
    config = copy.deepcopy(model_cfg)
    custom_text = config.pop("custom_text", False)
    model_class = library.CoCa if "multimodal_cfg" in config else (
        library.CustomTextCLIP if custom_text else library.CLIP)
    return model_class(**config)


def open_clip_on_meta(name: str) -> torch.nn.Module:
    """open_clip's model for a built-in name, built on the meta device (no memory; for counting)."""
    with torch.device("meta"):
        return open_clip_model(open_clip().get_model_config(name))


def randomize_(module: torch.nn.Module, seed: int, only_batch_norms: bool = False) -> torch.nn.Module:
    """Fill every parameter (norms included) and BatchNorm statistic with seeded random values, so
    that a comparison exercises every tensor; -> the module in eval mode. only_batch_norms: just the
    BatchNorm layers (for real-size models, whose own initialisation is random elsewhere but leaves
    BatchNorm at identity and some of its scales at zero)."""
    generator = torch.Generator().manual_seed(seed)
    if only_batch_norms:
        for child in module.modules():
            if isinstance(child, torch.nn.BatchNorm2d):
                randomize_(child, int(torch.randint(1 << 30, (), generator=generator)))
        return module.eval()
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
        for name, buffer in module.named_buffers():
            if name.endswith("running_var"):
                buffer.copy_(torch.rand(buffer.shape, generator=generator) + 0.5)
            elif name.endswith("running_mean"):
                buffer.copy_(torch.randn(buffer.shape, generator=generator) * 0.2)
    return module.eval()


RELATIVE_TOLERANCE = 1e-5  # the bound; fp32 reassociation between the libraries gives ~1e-7


def assert_relative_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """max |ours - theirs| <= 1e-5 * max |theirs| (shapes equal). Relative to the tensor's scale, so
    it holds on any processor: the libraries differ only by float reassociation."""
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    scale = float(theirs.abs().max())
    difference = float((ours.double() - theirs.double()).abs().max())
    assert difference <= RELATIVE_TOLERANCE * scale, f"max difference {difference:.3e} vs scale {scale:.3e}"
