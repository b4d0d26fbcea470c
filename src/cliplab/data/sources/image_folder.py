"""Source "image-folder": a directory of class folders of images (or of `{split}/` folders of them),
torchvision's ImageFolder layout; read as a benchmark dataset only (`data.benchmark.image_folder`):
`cliplab benchmark`, --zeroshot-dataset. Training has no captions to read from it."""

from __future__ import annotations

from cliplab.data.sources.spec import DataSource, layout_form

SOURCE = DataSource(
    name="image-folder", title="ImageFolder", summary="class folders of images (torchvision's ImageFolder layout)",
    location="a directory of class folders (or of {split}/ of them)",
    benchmark=layout_form("image_folder", "a directory of class folders of images"),
)
