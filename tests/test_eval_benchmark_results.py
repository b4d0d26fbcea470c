"""Result files: CLIP_benchmark's JSON records, the CSV its `build` makes, output templates that never
overwrite a user's file, and the charts' values."""

import csv
import json
import math

import pytest

from clip_benchmark_oracle import build_csv
from cliplab.errors import UserError
from cliplab.eval.benchmark_results import (chart_values, check_writable, output_paths, plot_charts, read_records,
                                            result_record, write_csv, write_record)

RESULTS = [
    {"model": "ViT-B-32", "pretrained": "runs/a", "task": "zeroshot_classification",
     "metrics": {"acc1": 0.5, "acc5": math.nan, "mean_per_class_recall": 0.25}},
    {"model": "ViT-B-32", "pretrained": "runs/a", "task": "zeroshot_retrieval",
     "metrics": {"image_retrieval_recall@1": 0.1, "text_retrieval_recall@1": 0.2, "image_retrieval_recall@5": 0.4,
                 "text_retrieval_recall@5": 0.6}},
    {"model": "tiny", "pretrained": "bundle/", "task": "linear_probe",
     "metrics": {"lp_acc1": 0.75, "lp_acc5": 1.0, "lp_mean_per_class_recall": 0.7, "weight_decay": 0, "epochs": 10,
                 "seed": 0, "fewshot_k": -1, "normalized": True}},
]


def _records():
    return [result_record("wds/vtab/cifar10", "en", result) for result in RESULTS]


def _rows(path):
    with open(path, newline="") as handle:
        return sorted((sorted(row.items()) for row in csv.DictReader(handle)), key=str)


def test_records_and_their_csv_equal_clip_benchmarks(tmp_path):
    records = _records()
    paths = output_paths(str(tmp_path / "out" / "{dataset}_{pretrained}_{model}_{language}_{task}.json"), records)
    assert paths[0].name == "wds_vtab_cifar10_runs_a_ViT-B-32_en_zeroshot_classification.json"
    for record, path in zip(records, paths):
        write_record(record, path)
    assert json.loads(paths[0].read_text().replace("NaN", "null"))["metrics"]["acc5"] is None  # written as NaN
    assert set(json.loads(paths[2].read_text())) == {"dataset", "model", "pretrained", "task", "metrics", "language"}
    ours = write_csv([record for _, record in read_records([tmp_path / "out"])], tmp_path / "ours.csv")
    theirs = build_csv([tmp_path / "out"], tmp_path / "theirs.csv")
    assert _rows(ours) == _rows(theirs)


def test_templates_name_one_file_per_result_and_user_files_are_kept(tmp_path):
    with pytest.raises(UserError, match=r"--output 'result.json' names one file for 3 results"):
        output_paths("result.json", _records())
    mine = tmp_path / "notes.json"
    mine.write_text('{"my": "notes"}')
    with pytest.raises(UserError, match=r"notes.json exists and is not a benchmark result"):
        check_writable([mine])
    earlier = write_record(_records()[0], tmp_path / "earlier.json")
    check_writable([earlier])  # an earlier result may be replaced
    with pytest.raises(UserError, match=r"--build: .*missing does not exist"):
        read_records([tmp_path / "missing"])
    with pytest.raises(UserError, match=r"--build: .*notes.json is not a benchmark result"):
        read_records([mine])


def test_one_chart_per_task_comparing_models(tmp_path):
    values = chart_values(_records())
    assert values["zeroshot_classification"] == ("acc1", {"wds/vtab/cifar10": {"ViT-B-32 runs/a": 0.5}})
    assert values["zeroshot_retrieval"][0] == "image_retrieval_recall@1"
    assert values["linear_probe"] == ("lp_acc1", {"wds/vtab/cifar10": {"tiny bundle/": 0.75}})
    written = plot_charts(_records(), tmp_path / "charts")
    assert sorted(path.name for path in written) == ["linear_probe.png", "zeroshot_classification.png",
                                                    "zeroshot_retrieval.png"]
    assert all(path.stat().st_size > 1000 for path in written)
