import argparse
import json

from cliplab.cli import main, shards_command
from cliplab.data.webdataset_source import expand_shard_urls
from data_fixtures import make_fashion_dir, make_manifest


def parse(argv):
    parser = argparse.ArgumentParser(prog="cliplab")
    shards_command.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_fashion_mnist_to_shards(tmp_path, capsys):
    data_dir = make_fashion_dir(tmp_path / "fm", train_count=25)
    args = parse(["shards", "--from", "fashion-mnist", "--split", "train", "--out",
                  str(tmp_path / "out"), "--samples-per-shard", "10", "--data-dir", str(data_dir)])
    assert args.run(args) == 0
    output = capsys.readouterr().out
    pattern = str(tmp_path / "out" / "train-{000000..000002}.tar")
    assert f"25 samples in 3 shards: {pattern}" in output
    assert len(expand_shard_urls(pattern)) == 3
    assert json.loads((tmp_path / "out" / "train-info.json").read_text())["num_samples"] == 25


def test_manifest_with_bad_rows_reports_them(tmp_path, capsys):
    manifest = make_manifest(tmp_path / "set", 6, bad={4: "missing"})
    args = parse(["shards", "--from", str(manifest), "--out", str(tmp_path / "out"),
                  "--max-samples", "5"])
    assert args.run(args) == 0
    output = capsys.readouterr().out
    assert "4 samples in 1 shards" in output and "skipped 1 bad samples" in output
    assert "4.png: image file does not exist" in output


def test_missing_column_is_a_user_error(tmp_path, capsys):
    manifest = make_manifest(tmp_path, 2)
    assert main(["shards", "--from", str(manifest), "--out", str(tmp_path / "o"), "--csv-caption-key", "text"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cliplab shards: error: manifest ") and "no column 'text'" in err


def test_bad_counts_are_user_errors_naming_the_flag(tmp_path, capsys):
    for flag in ("--samples-per-shard", "--max-samples"):
        assert main(["shards", "--from", "fashion-mnist", "--out", str(tmp_path / "o"), flag, "0"]) == 2
        assert capsys.readouterr().err == f"cliplab shards: error: {flag} must be >= 1, got 0\n"


def test_help_has_examples(capsys):
    parser = argparse.ArgumentParser(prog="cliplab")
    subparsers = parser.add_subparsers()
    shards = shards_command.add_parser(subparsers)
    text = shards.format_help()
    assert "cliplab shards --from fashion-mnist --split train --out" in text
    assert "--samples-per-shard" in text and "--csv-separator" in text


def test_help_trains_on_the_shards_without_a_sample_count():
    import shlex

    from cliplab.cli import build_parser
    from cliplab.cli.train_command import overrides_from_args

    example = shards_command.EXAMPLES.split("then train on them")[1]
    command = " ".join(line.strip().rstrip("\\") for line in example.splitlines()[1:] if line.strip())
    overrides = overrides_from_args(build_parser().parse_args(shlex.split(command)[1:]))
    assert overrides == {"data.dataset_type": "webdataset",
                         "data.train_data": "shards/fmnist/train-{000000..000005}.tar"}  # 60000 / 10000 shards
    assert "--train-num-samples" not in shards_command.EXAMPLES
