"""Source "image-folder": a directory of class folders of images (or of `{split}/` folders of them),
torchvision's ImageFolder layout; read as a benchmark dataset only (`data.benchmark.image_folder`):
`cliplab benchmark`, --zeroshot-dataset. Training has no captions to read from it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cliplab.data.sources.spec import BenchmarkForm, DataSource, path_detector

if TYPE_CHECKING:
    from cliplab.data.benchmark.dataset import BenchmarkDataset


def open_benchmark(location: str, options: Any) -> BenchmarkDataset:
    from cliplab.data.benchmark import image_folder

    return image_folder.open_dataset(Path(location), name=options.name)


def _is_benchmark(path: Path) -> bool:
    from cliplab.data.benchmark import image_folder

    return image_folder.detect(path)


SOURCE = DataSource(
    name="image-folder", title="ImageFolder", summary="class folders of images (torchvision's ImageFolder layout)",
    location="a directory of class folders (or of {split}/ of them)",
    benchmark=BenchmarkForm(location="a directory of class folders of images", detect=path_detector(_is_benchmark),
                            open=open_benchmark),
)
