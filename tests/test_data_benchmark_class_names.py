"""Class names and templates: the dataset's own first, then the built-in sets by name, else one line
naming the file that was looked for."""

import json

import pytest

from benchmark_fixtures import write_image_folder
from cliplab.data.benchmark import open_benchmark_dataset
from cliplab.data.benchmark.class_names import (builtin_classnames, builtin_templates, openai_short_templates,
                                                read_lines_file, resolve_classnames, resolve_templates)
from cliplab.errors import UserError
from reference_libraries import ORACLES


def test_builtin_sets_are_clip_benchmarks_and_open_clips():
    for language in ("en", "ar", "cn", "it", "jp"):
        for kind, ours in (("classnames", builtin_classnames(language)),
                           ("zeroshot_classification_templates", builtin_templates(language))):
            path = ORACLES / "clip_benchmark" / "datasets" / f"{language}_{kind}.json"
            if path.is_file():
                assert ours == json.loads(path.read_text())
    assert len(builtin_classnames()["imagenet1k"]) == 1000 and len(builtin_templates()["imagenet1k"]) == 80
    assert openai_short_templates()[0] == "itap of a {c}." and len(openai_short_templates()) == 7


def test_own_files_first_then_builtin_by_name_else_the_missing_file_is_named(tmp_path):
    write_image_folder(tmp_path, {"cifar10": 6})
    dataset = open_benchmark_dataset(str(tmp_path / "cifar10"))
    assert resolve_templates(dataset).values == tuple(builtin_templates()["cifar10"])  # by the folder's name
    (tmp_path / "cifar10" / "zeroshot_classification_templates.txt").write_text("a {c} here.\nthe {}.\n")
    dataset = open_benchmark_dataset(str(tmp_path / "cifar10"))
    assert resolve_templates(dataset).values == ("a {c} here.", "the {}.")
    assert resolve_templates(dataset, choice="openai").values == tuple(builtin_templates()["imagenet1k"])
    assert resolve_templates(dataset, choice="openai-short").values == openai_short_templates()
    assert resolve_classnames(dataset, choice="imagenet1k").values[0] == "tench"

    write_image_folder(tmp_path, {"my_pets": 6})
    with pytest.raises(UserError, match=r"my_pets/zeroshot_classification_templates.txt does not exist and no "
                                         r"built-in templates exist for my_pets"):
        resolve_templates(open_benchmark_dataset(str(tmp_path / "my_pets")))


def test_bad_files_are_one_line_naming_file_and_line(tmp_path):
    (tmp_path / "names.txt").write_text("cat\n\ndog\n\n")
    with pytest.raises(UserError, match=r"names.txt line 2 is blank"):
        read_lines_file(tmp_path / "names.txt", "class names")
    write_image_folder(tmp_path, {"set": 6})
    (tmp_path / "set" / "zeroshot_classification_templates.txt").write_text("no placeholder\n")
    with pytest.raises(UserError, match=r"template 'no placeholder' has no '\{c\}'"):
        resolve_templates(open_benchmark_dataset(str(tmp_path / "set")))
    with pytest.raises(UserError, match=r"--templates 'nothing' is neither a file nor a built-in set"):
        resolve_templates(open_benchmark_dataset(str(tmp_path / "set")), choice="nothing")


def test_fewer_class_names_than_labels_names_both_files(tmp_path):
    write_image_folder(tmp_path, {"set": 6})
    (tmp_path / "set" / "classnames.txt").write_text("a\nb\nc\n")
    dataset = open_benchmark_dataset(str(tmp_path / "set"))
    with pytest.raises(UserError, match=r"set: labels run from 0 to 5 but .*set/classnames.txt names 3 classes"):
        dataset.split("test").check_labels(3, dataset.classnames.source)
