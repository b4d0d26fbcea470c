"""CLIP_benchmark 1.6.2's own functions, runnable here, for the tests that compare against them.

Three adaptations, none of which changes what CLIP_benchmark computes:
- `numpy_scalars()`: its `accuracy` calls `float()` on a 1-element 1-D array, which NumPy >= 2.3
  refuses; inside the context, `Tensor.numpy()` of a shape-(1,) tensor returns a 0-d array.
- `cuda_on_cpu()`: its `linear_probe` asserts device == "cuda" and moves tensors and modules there;
  inside the context `.cuda()` is the identity and `.to("cuda")` means the CPU (DataParallel over no
  GPU calls the module directly).
- `datasets_builder()`: `clip_benchmark.datasets.builder` imports torchvision's datasets at module
  level (torchvision does not import against this CPU torch); empty stand-ins for those modules are
  in `sys.modules` while it and `clip_benchmark.cli` import, as `reference_libraries.open_clip` does
  for open_clip. Only its webdataset reader and `build` are used, which need none of them.
"""

from __future__ import annotations

import contextlib
import sys
import types
from functools import lru_cache
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import reference_libraries  # noqa: F401  (build/test-oracles on sys.path)


def metrics_modules():
    """(zeroshot_classification, zeroshot_retrieval, linear_probe) modules of clip_benchmark.metrics."""
    pytest.importorskip("sklearn")
    module = pytest.importorskip("clip_benchmark.metrics.linear_probe")
    from clip_benchmark.metrics import zeroshot_classification, zeroshot_retrieval

    return zeroshot_classification, zeroshot_retrieval, module


@contextlib.contextmanager
def numpy_scalars():
    original = torch.Tensor.numpy

    def numpy(self, *args, **kwargs):
        array = original(self, *args, **kwargs)
        return array.reshape(()) if array.shape == (1,) else array

    torch.Tensor.numpy = numpy
    try:
        yield
    finally:
        torch.Tensor.numpy = original


@contextlib.contextmanager
def cuda_on_cpu():
    saved = torch.nn.Module.cuda, torch.Tensor.cuda, torch.Tensor.to
    original_to = torch.Tensor.to

    def to(self, *args, **kwargs):
        return original_to(self, *("cpu" if arg == "cuda" else arg for arg in args), **kwargs)

    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.Tensor.to = to
    try:
        yield
    finally:
        torch.nn.Module.cuda, torch.Tensor.cuda, torch.Tensor.to = saved


class _Labelled(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str]):
        self.images, self.labels, self.classes = images, labels, classes

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]


class _Captioned(Dataset):
    def __init__(self, images: torch.Tensor, captions: list[list[str]]):
        self.images, self.captions = images, captions

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, index: int):
        return self.images[index], self.captions[index]


def _captions_collate(batch):
    images, captions = zip(*batch)
    return torch.stack(images), list(captions)


def zero_shot(model, tokenizer, images, labels, classnames, templates, batch_size) -> dict:
    """`zeroshot_classification.evaluate` (amp off, CPU) on preprocessed images with labels;
    templates spell the class name `{c}`."""
    zeroshot_classification, _, _ = metrics_modules()
    loader = DataLoader(_Labelled(images, labels, list(classnames)), batch_size=batch_size, shuffle=False)
    with numpy_scalars(), torch.no_grad():
        return zeroshot_classification.evaluate(model, loader, tokenizer, list(classnames), list(templates), "cpu",
                                                amp=False)


def retrieval(model, tokenizer, images, captions, recall_k, batch_size) -> dict:
    """`zeroshot_retrieval.evaluate` (amp off, CPU) on preprocessed images with caption lists."""
    _, zeroshot_retrieval, _ = metrics_modules()
    loader = DataLoader(_Captioned(images, [list(texts) for texts in captions]), batch_size=batch_size,
                        shuffle=False, collate_fn=_captions_collate)
    return zeroshot_retrieval.evaluate(model, loader, tokenizer, "cpu", amp=False, recall_k_list=list(recall_k))


def linear_probe(root: Path, train, test, validation=None, *, epochs: int, lr: float, batch_size: int, seed: int,
                 fewshot_k: int = -1) -> dict:
    """`linear_probe.evaluate` on features already in its cache (so it encodes nothing), with the
    global RNG seeded with `seed` right before, as cliplab's probe seeds its own."""
    _, _, module = metrics_modules()
    directory = root / "model"
    directory.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", train), ("val", validation), ("test", test)):
        if rows is not None:
            torch.save(rows.features, directory / f"features_{name}.pt")
            torch.save(rows.labels, directory / f"targets_{name}.pt")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as cliplab's probe trains a small probe on a CPU (same arithmetic, and fast)
    try:
        with cuda_on_cpu(), numpy_scalars():
            torch.manual_seed(seed)
            return module.evaluate(torch.nn.Identity(), None, None, fewshot_k, batch_size, 0, lr, epochs, "model",
                                   seed, str(root), "cuda", amp=False, verbose=False,
                                   val_dataloader=None if validation is None else object())
    finally:
        torch.set_num_threads(threads)


def build_csv(files: list[Path], output: Path) -> Path:
    """`clip_benchmark build FILES --output OUTPUT`."""
    datasets_builder()  # skips when its imports fail
    _import_builder()[1].main_build(types.SimpleNamespace(files=[str(file) for file in files], output=str(output)))
    return output


_STAND_IN_MODULES = ("torchvision", "torchvision.datasets", "torchvision.datasets.utils",
                     "torchvision.datasets.vision", "torchvision.transforms")
# clip_benchmark.cli imports its captioning metrics, which import pycocoevalcap (not installed here).
_CAPTIONING_CLASSES = {"tokenizer.ptbtokenizer": "PTBTokenizer", "bleu.bleu": "Bleu", "meteor.meteor": "Meteor",
                       "rouge.rouge": "Rouge", "cider.cider": "Cider", "spice.spice": "Spice"}
_DATASET_NAMES = ("CIFAR10", "CIFAR100", "DTD", "GTSRB", "MNIST", "PCAM", "STL10", "SUN397", "CocoCaptions",
                  "Country211", "EuroSAT", "FGVCAircraft", "Flowers102", "Food101", "ImageFolder", "ImageNet",
                  "OxfordIIITPet", "RenderedSST2", "StanfordCars", "VisionDataset")


def _stand_ins() -> dict[str, types.ModuleType]:
    modules = {name: types.ModuleType(name) for name in _STAND_IN_MODULES}
    for name in _DATASET_NAMES:
        setattr(modules["torchvision.datasets"], name, type(name, (), {}))
    modules["torchvision.datasets.vision"].VisionDataset = modules["torchvision.datasets"].VisionDataset
    for name in ("download_and_extract_archive", "verify_str_arg", "download_url", "check_integrity"):
        setattr(modules["torchvision.datasets.utils"], name, lambda *args, **kwargs: None)
    modules["torchvision.transforms"].Compose = type("Compose", (), {})
    modules["torchvision"].datasets = modules["torchvision.datasets"]
    modules["torchvision"].transforms = modules["torchvision.transforms"]
    modules["torchvision.datasets"].utils = modules["torchvision.datasets.utils"]
    modules["torchvision.datasets"].vision = modules["torchvision.datasets.vision"]
    for path, class_name in _CAPTIONING_CLASSES.items():
        parts = ["pycocoevalcap", *path.split(".")]
        for depth in range(1, len(parts) + 1):
            modules.setdefault(".".join(parts[:depth]), types.ModuleType(".".join(parts[:depth])))
        setattr(modules["pycocoevalcap." + path], class_name, type(class_name, (), {}))
    return modules


@lru_cache(maxsize=1)
def _import_builder():
    reference_libraries.open_clip()  # clip_benchmark.cli imports its model loaders, which import open_clip
    stand_ins = _stand_ins()
    saved = {name: sys.modules.get(name) for name in stand_ins}
    sys.modules.update(stand_ins)
    try:
        from clip_benchmark import cli
        from clip_benchmark.datasets import builder
    finally:
        for name, previous in saved.items():
            if previous is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = previous
    return builder, cli


def _builder_importable() -> bool:
    try:
        _import_builder()
    except ImportError:
        return False
    return True


def datasets_builder():
    """clip_benchmark.datasets.builder (skips the test when it cannot be imported)."""
    if not _builder_importable():
        pytest.skip("clip_benchmark.datasets.builder does not import here")
    return _import_builder()[0]


def wds_samples(directory: Path, split: str, task: str) -> tuple[list, list | None, list | None]:
    """(samples, classes, templates) of CLIP_benchmark's `build_dataset("wds/<name>", ...)` on a
    directory in its webdataset layout: samples are (PIL image, label) or (PIL image, captions)."""
    builder = datasets_builder()
    dataset = builder.build_dataset(f"wds/{directory.name}", root=str(directory), transform=lambda image: image,
                                    split=split, task=task)
    return list(dataset), getattr(dataset, "classes", None), getattr(dataset, "templates", None)
