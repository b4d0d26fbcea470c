"""ImageFolder trees as benchmark datasets: torchvision's order, splits, and class names."""

import numpy as np
import pytest
from PIL import Image

from benchmark_fixtures import CLASSNAMES, write_image_folder
from cliplab.data.benchmark import open_benchmark_dataset
from cliplab.data.benchmark.class_names import builtin_classnames, imagenet_wnids
from cliplab.errors import UserError


def test_split_folders_give_splits_in_torchvision_order(tmp_path):
    written = write_image_folder(tmp_path / "set", {"train": 9, "test": 7})
    dataset = open_benchmark_dataset(str(tmp_path / "set"))
    assert dataset.layout == "image_folder" and set(dataset.split_names) == {"train", "test"}
    folders = sorted(name.replace(" ", "_") for name in CLASSNAMES)
    assert dataset.classnames.values == tuple(name.replace("_", " ") for name in folders)
    for split, (paths, labels) in written.items():
        opened = dataset.split(split)
        assert opened.images.paths == tuple(paths)
        # written labels index CLASSNAMES; the folder order is alphabetical
        assert [dataset.classnames.values[label] for label in opened.labels] == [CLASSNAMES[label] for label in labels]
        assert np.array_equal(np.asarray(opened.images.read(0)), np.asarray(Image.open(paths[0]).convert("RGB")))


def test_class_folders_alone_are_the_test_split_and_classnames_txt_wins(tmp_path):
    write_image_folder(tmp_path, {"set": 6})
    (tmp_path / "set" / "classnames.txt").write_text("".join(f"name {index}\n" for index in range(6)))
    dataset = open_benchmark_dataset(str(tmp_path / "set"))
    assert dataset.split_names == ("test",) and dataset.classnames.values[0] == "name 0"
    assert dataset.classnames.source == str(tmp_path / "set" / "classnames.txt")


def test_wordnet_id_folders_are_imagenet_classes(tmp_path):
    wnids = imagenet_wnids()
    for wnid in (wnids[1], wnids[3], wnids[999]):
        (tmp_path / "imagenet-r" / wnid).mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "imagenet-r" / wnid / "a.jpg")
    dataset = open_benchmark_dataset(str(tmp_path / "imagenet-r"))
    names = builtin_classnames("en")["imagenet1k"]
    assert dataset.classnames.values == (names[1], names[3], names[999])
    assert dataset.lookup_names == ("imagenet-r", "imagenet1k")  # ImageNet's templates as fallback


def test_an_empty_class_folder_tree_is_one_line(tmp_path):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "cat" / "note.txt").write_text("no images")
    with pytest.raises(UserError, match=r"split 'test' holds no images"):
        open_benchmark_dataset(str(tmp_path / "empty")).split("test")
