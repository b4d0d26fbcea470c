"""A map-style dataset restricted to some class labels (`data.train_classes`, --train-classes).

The kept samples are those whose label is one of the classes, in the dataset's order; each is read
by its index in the whole dataset, so its caption and its name (`RawSample.source`) are the ones it
has there. The labels must be known without reading the samples (`labels`, one per sample: the
Fashion-MNIST files', a manifest's label column).
"""

from __future__ import annotations

from typing import Sequence

from cliplab.data.samples import MapDataset, RawSample
from cliplab.errors import UserError


class ClassSubset:
    """The samples of `dataset` (a map-style dataset with `labels`) whose label is in `classes`."""

    def __init__(self, dataset: MapDataset, classes: Sequence[int], *, what: str):
        labels = [int(label) for label in getattr(dataset, "labels", ())]
        wanted = set(classes)
        absent = sorted(wanted - set(labels))
        if absent:
            raise UserError(f"--train-classes {','.join(map(str, classes))} (data.train_classes): {what} has no "
                            f"sample of class{'es' if len(absent) != 1 else ''} {', '.join(map(str, absent))}")
        self.dataset = dataset
        self.indices = [index for index, label in enumerate(labels) if label in wanted]
        self.labels = [labels[index] for index in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def read(self, index: int, *, epoch: int) -> RawSample:
        return self.dataset.read(self.indices[index], epoch=epoch)
