"""The real reference libraries (open_clip 3.3.0, transformers), importable offline here.

open_clip and timm import torchvision at module level, and torchvision does not import against the
CPU torch on this machine. Their model code and tokenizers never call torchvision, so `open_clip()`
and `timm()` import them behind `torchvision_stand_in()`: a meta-path finder that makes every
`torchvision.*` module importable and every attribute a placeholder class, removed again once the
import is done (transformers is imported first: its `find_spec("torchvision")` probe would find the
stand-in). Nothing here re-implements any library: the stand-ins are empty placeholders, and every
test compares against the real classes.

`reference_mode()` switches off `nn.MultiheadAttention`'s eval fast path, whose fused kernel
differs from packed-linear + SDPA in the last bits; with it off, open_clip's attention is the same
computation as cliplab's up to float reassociation.
"""

from __future__ import annotations

import contextlib
import copy
import enum
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
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

class _InterpolationMode(enum.Enum):
    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


class _Placeholder:
    """What every torchvision attribute is while the stand-in is installed: a class that can be
    subclassed, instantiated with any arguments, and called (doing nothing)."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return None


class _FrozenBatchNorm2d(torch.nn.Module):
    """timm and open_clip import torchvision's FrozenBatchNorm2d to subclass or test against; no
    model they build for cliplab's configs instantiates it."""

    def __init__(self, *args, **kwargs):
        super().__init__()


_SPECIAL_ATTRIBUTES = {"InterpolationMode": _InterpolationMode, "FrozenBatchNorm2d": _FrozenBatchNorm2d}


class _StandInModule(types.ModuleType):
    """A torchvision module of the stand-in: every submodule imports (it is a package) and every
    attribute is a placeholder class named after it (the same class each time)."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _SPECIAL_ATTRIBUTES.get(name) or type(name, (_Placeholder,), {"__module__": self.__name__})
        setattr(self, name, value)
        return value


class _TorchvisionStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """A meta-path finder that makes every `torchvision` and `torchvision.*` module importable as
    a `_StandInModule` (see `torchvision_stand_in`)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StandInModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


@contextlib.contextmanager
def torchvision_stand_in():
    """While inside: `import torchvision...` of any submodule gives a stand-in module (see
    `_StandInModule`), unless a real torchvision was already imported. On exit the finder and the
    stand-in modules are removed again, so later code (transformers' availability probe
    included) sees no torchvision; the modules that imported them keep their placeholders."""
    finder = _TorchvisionStandIn()
    before = {name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")}
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [name for name in sys.modules if (name == "torchvision" or name.startswith("torchvision."))
                     and name not in before]:
            del sys.modules[name]


def _import_behind_stand_in(name: str):
    """`import name` (open_clip or timm) with torchvision stood in; skips the test when the package is
    not installed. transformers is imported first: its `find_spec("torchvision")` probe at import
    time would otherwise find the stand-in."""
    pytest.importorskip("transformers")
    if name in sys.modules:
        return sys.modules[name]
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed (scripts/setup.sh installs the test oracles)")
    with torchvision_stand_in():
        return importlib.import_module(name)


@lru_cache(maxsize=1)
def open_clip():
    """The installed open_clip package (skips the test when it is not installed); timm too, so
    open_clip builds its timm towers."""
    timm()
    return _import_behind_stand_in("open_clip")


@lru_cache(maxsize=1)
def timm():
    """The installed timm package (skips the test when it is not installed)."""
    return _import_behind_stand_in("timm")


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


def open_clip_model(model_cfg: dict, timm_kwargs: dict | None = None) -> torch.nn.Module:
    """open_clip's own model class for an open_clip `model_cfg` (CLIP, CustomTextCLIP or CoCa, as
    open_clip's factory chooses).

    timm_kwargs: keyword arguments added to open_clip's `timm.create_model` call for a timm image
    tower (timm's model functions let them override their own, e.g. {"depth": 2, "embed_dim": 64,
    "num_heads": 2}): a small variant of a timm tower with all its other features. The config
    still names the full-size timm model, so a cliplab model compared with it must be given the
    same sizes (its family's config, not the open_clip name)."""
    library = open_clip()
    config = copy.deepcopy(model_cfg)
    # as open_clip's factory: a Hugging Face text tower means CustomTextCLIP
    custom_text = config.pop("custom_text", False) or bool(config.get("text_cfg", {}).get("hf_model_name"))
    model_class = library.CoCa if "multimodal_cfg" in config else (
        library.CustomTextCLIP if custom_text else library.CLIP)
    with smaller_timm_towers(timm_kwargs or {}):
        return model_class(**config)


@contextlib.contextmanager
def smaller_timm_towers(extra: dict):
    """While inside, open_clip builds every timm tower with `extra` added to its `timm.create_model`
    call (see `open_clip_model`), also through its own factory (`create_model("local-dir:...")`)."""
    module = open_clip().timm_model
    create_model = module.timm.create_model

    def create_with_extra(name, **kwargs):
        return create_model(name, **kwargs, **extra)
    module.timm.create_model = create_with_extra
    try:
        yield
    finally:
        module.timm.create_model = create_model


@lru_cache(maxsize=None)
def open_clip_on_meta(name: str) -> torch.nn.Module:
    """open_clip's model for a built-in name, built on the meta device (no memory; for counting
    and tensor layouts), once per process: the same module each call, not to be changed. A config
    with a Hugging Face text tower reads that model's config from the Hugging Face cache or the
    network (OSError when neither has it), and is built as open_clip's factory builds it for a
    checkpoint: `hf_model_pretrained` off (no weights read)."""
    model_cfg = open_clip().get_model_config(name)
    if model_cfg.get("text_cfg", {}).get("hf_model_name"):
        model_cfg["text_cfg"]["hf_model_pretrained"] = False
    with torch.device("meta"):
        return open_clip_model(model_cfg)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def open_clip_parameter_count(name: str) -> int:
    """open_clip 3.3.0's (with timm 1.0.31's towers) parameter count for a built-in name (its
    model built on the meta device once per process)."""
    return parameter_count(open_clip_on_meta(name))


def write_open_clip_hub(directory: Path, model_cfg: dict, *, seed: int, preprocess_cfg: dict | None = None,
                        timm_kwargs: dict | None = None) -> torch.nn.Module:
    """An open_clip hub directory (`open_clip_config.json` + `open_clip_model.safetensors`) holding
    open_clip's model for `model_cfg` with seeded random weights (`randomize_`); -> that model (eval
    mode), the reference to compare a loaded model with. Small variants: shrink `model_cfg`'s own
    numbers (`small_open_clip_cfg`), and a timm tower's with `timm_kwargs` (see `open_clip_model`)."""
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = randomize_(open_clip_model(model_cfg, timm_kwargs), seed=seed + 1)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg,
                                                                 "preprocess_cfg": preprocess_cfg or {}}))
    state = {name: tensor.detach().clone().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(directory / "open_clip_model.safetensors"))
    return model


def small_open_clip_cfg(name: str, **sections: dict) -> dict:
    """open_clip's `model_cfg` of built-in `name` with `sections` merged into it, e.g.
    `small_open_clip_cfg("ViT-B-16-SigLIP", text_cfg={"layers": 2, "width": 64, "heads": 2},
    embed_dim=64)` (a dict merges into the section it names, anything else replaces the key)."""
    model_cfg = open_clip().get_model_config(name)
    for key, value in sections.items():
        model_cfg[key] = {**model_cfg.get(key, {}), **value} if isinstance(value, dict) else value
    return model_cfg


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
