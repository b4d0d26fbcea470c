"""Config loading: strict keys, typed values, errors naming the dotted key, precedence, round trip."""

import json

import pytest

from cliplab.train.config import ConfigError, LoopConfig, OptimConfig, TrainConfig, has_evaluation_data
from cliplab.train.config.io import (config_from_dict, config_to_dict, load_config_file, parse_override,
                                     resolve_config, save_config)
from cliplab.train.run_dir import default_run_name


def test_defaults_build_and_round_trip(tmp_path):
    config = TrainConfig()
    path = tmp_path / "config.json"
    save_config(config, path)
    assert resolve_config(path) == config  # a run's config.json is a --config file
    assert config_to_dict(config)["loop"]["batch_size"] == config.loop.batch_size


@pytest.mark.parametrize("data, key", [
    ({"optim": {"lrr": 1e-3}}, "optim.lrr"),
    ({"optimizer": {}}, "optimizer"),
    ({"model": {"overrides": {}, "nmae": "tiny"}}, "model.nmae"),
])
def test_unknown_key_is_named(data, key):
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert info.value.key == key
    assert f"'{key}'" in str(info.value) and "not a known key" in str(info.value)


@pytest.mark.parametrize("data, key, value", [
    ({"optim": {"lr": -1.0}}, "optim.lr", -1.0),
    ({"loop": {"batch_size": 0}}, "loop.batch_size", 0),
    ({"loop": {"precision": "fp8"}}, "loop.precision", "fp8"),
    ({"loop": {"epochs": "ten"}}, "loop.epochs", "ten"),
    ({"loop": {"epochs": True}}, "loop.epochs", True),
    ({"loss": {"dist_impl": "bidir"}}, "loss.dist_impl", "bidir"),  # needs siglip
    ({"loss": {"local_loss": True}}, "loss.local_loss", True),  # needs gather_with_grad
    ({"checkpoint": {"keep_checkpoints": 0}}, "checkpoint.keep_checkpoints", 0),
    ({"optim": {"eps": float("inf")}}, "optim.eps", float("inf")),  # was accepted
    ({"checkpoint": {"resume": "latest"}}, "checkpoint.resume", "latest"),  # needs a name
    ({"optim": "fast"}, "optim", "fast"),
])
def test_bad_value_is_named(data, key, value):
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert info.value.key == key
    assert info.value.value == value
    assert f"'{key}'" in str(info.value)


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "a\0b"])
def test_a_run_name_is_one_path_component(name):
    # `--name ..` wrote the run into the parent of --logs, over a config.json there.
    with pytest.raises(ConfigError) as info:
        resolve_config(None, {"logging.name": name})
    assert str(info.value) == ("config key 'logging.name' must be one path component (not empty, '.' or '..', "
                               f"without '/' or a NUL character), got {name!r}")


def test_other_packages_sections_report_their_key():
    with pytest.raises(ConfigError, match="data.*dataset_type"):
        config_from_dict({"data": {"dataset_type": "parquet"}})


def test_int_widens_to_float_and_bool_does_not():
    assert config_from_dict({"optim": {"lr": 1}}).optim.lr == 1.0
    assert isinstance(config_from_dict({"optim": {"lr": 1}}).optim.lr, float)
    with pytest.raises(ConfigError):
        config_from_dict({"optim": {"lr": True}})


def test_direct_construction_validates_too():
    with pytest.raises(ConfigError, match="'accum_freq'"):
        LoopConfig(accum_freq=0)
    with pytest.raises(ConfigError, match="'min_lr'"):
        OptimConfig(lr=1e-3, min_lr=1e-2)


def test_yaml_json_and_override_precedence(tmp_path):
    yaml_path = tmp_path / "exp.yaml"
    yaml_path.write_text("optim:\n  lr: 0.01\nloop:\n  epochs: 3\n  batch_size: 32\n")
    json_path = tmp_path / "exp.json"
    json_path.write_text(json.dumps({"optim": {"lr": 0.01}, "loop": {"epochs": 3, "batch_size": 32}}))
    assert load_config_file(yaml_path) == load_config_file(json_path)
    config = resolve_config(yaml_path, {"loop.epochs": 5})
    assert (config.optim.lr, config.loop.epochs, config.loop.batch_size) == (0.01, 5, 32)


def test_bad_file_and_unknown_override(tmp_path):
    with pytest.raises(ConfigError, match="'config'"):
        resolve_config(tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        resolve_config(bad)
    with pytest.raises(ConfigError) as info:
        resolve_config(None, {"loop.batchsize": 3})
    assert info.value.key == "loop.batchsize"


def test_a_config_file_that_is_not_utf8_names_the_file_and_line(tmp_path):
    # Before: UnicodeDecodeError.
    path = tmp_path / "exp.yaml"
    path.write_bytes(b"loop:\n  epochs: 1  # caf\xe9\n")
    with pytest.raises(ConfigError) as refused:
        resolve_config(path)
    assert str(refused.value) == f"config key 'config' must be UTF-8 text (byte 0xe9 on line 2), got {str(path)!r}"


def test_parse_override():
    assert parse_override("optim.lr=1e-3") == ("optim.lr", "1e-3")  # YAML 1.1: a string, a number once built
    assert resolve_config(None, dict([parse_override("optim.lr=1e-3")])).optim.lr == 1e-3
    assert parse_override("loop.max_steps=null") == ("loop.max_steps", None)
    assert parse_override("model.overrides={embed_dim: 32}") == ("model.overrides", {"embed_dim": 32})
    with pytest.raises(ConfigError):
        parse_override("optim.lr")


def test_a_name_that_reads_as_a_number_stays_a_name():
    config = resolve_config(None, dict([parse_override("logging.name=1e3")]))
    assert config.logging.name == "1e3"
    with pytest.raises(ConfigError, match="'loop.epochs' must be an integer"):
        resolve_config(None, dict([parse_override("loop.epochs=1e3")]))


def test_shipped_experiment_configs_load():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))
    assert configs, "configs/*.yaml missing"
    names = {path.stem for path in configs}
    for path in configs:
        resolve_config(path)
        if not path.stem.endswith("-tiny"):
            assert f"{path.stem}-tiny" in names, f"{path.name} has no tiny twin"


def test_default_overrides_apply_to_tiny_only():
    from cliplab.train.config import DEFAULT_MODEL_OVERRIDES

    assert TrainConfig().model.overrides == DEFAULT_MODEL_OVERRIDES["tiny"]
    assert config_from_dict({"model": {"name": "tiny-vit"}}).model.overrides == {}
    assert config_from_dict({"model": {"overrides": {}}}).model.overrides == {}


def test_a_pretrained_run_takes_the_checkpoints_architecture_unless_a_name_is_given():
    assert TrainConfig().model.name == "tiny"
    pretrained = config_from_dict({"model": {"pretrained": "downloads/ViT-B-32-laion2b/"}})
    assert (pretrained.model.name, pretrained.model.overrides) == (None, {})  # not tiny's default overrides
    assert pretrained.model.label == "ViT-B-32-laion2b"
    assert default_run_name(pretrained).endswith("-model_ViT-B-32-laion2b-lr_0.002-b_128")
    named = config_from_dict({"model": {"pretrained": "epoch_32.pt", "name": "ViT-B-32"}}).model
    assert (named.name, named.label) == ("ViT-B-32", "ViT-B-32")
    assert config_from_dict(config_to_dict(pretrained)) == pretrained  # a saved run config reads back
    with pytest.raises(ConfigError, match="'model.pretrained' must be a checkpoint path"):
        config_from_dict({"model": {"pretrained": ""}})


def test_default_run_config_file_equals_the_defaults():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "configs" / "tiny-fashion-mnist.yaml"
    assert resolve_config(path) == TrainConfig()


def test_periodic_evaluation_needs_evaluation_data():
    needs_val = r"'eval.zeroshot_frequency'.*csv run evaluates on data.val_data \(--val-data\)"
    with pytest.raises(ConfigError, match=needs_val):
        config_from_dict({"data": {"dataset_type": "csv", "train_data": "train.tsv"},
                          "eval": {"zeroshot_frequency": 1}})
    with pytest.raises(ConfigError, match="'eval.zeroshot_frequency'.*webdataset"):
        config_from_dict({"data": {"dataset_type": "webdataset", "train_data": "shards-{0..3}.tar",
                                   "train_num_samples": 100}, "eval": {"zeroshot_frequency": 2}})
    with_val = config_from_dict({"data": {"dataset_type": "csv", "train_data": "train.tsv", "val_data": "val.tsv"},
                                 "eval": {"zeroshot_frequency": 1}})
    assert with_val.evaluates_at_end


def test_final_evaluation_is_skipped_without_evaluation_data():
    without_val = config_from_dict({"data": {"dataset_type": "csv", "train_data": "train.tsv"}})
    assert without_val.eval.eval_at_end and not without_val.evaluates_at_end
    assert not has_evaluation_data(without_val.data)
    assert TrainConfig().evaluates_at_end  # Fashion-MNIST brings its test split
    assert not config_from_dict({"eval": {"eval_at_end": False}}).evaluates_at_end


def test_csv_and_webdataset_runs_need_train_data():
    with pytest.raises(ConfigError, match=r"'data.train_data'.*dataset_type 'csv' \(--train-data\)"):
        config_from_dict({"data": {"dataset_type": "csv", "val_data": "val.tsv"}})


def test_differences_from_defaults_name_each_changed_key_in_field_order():
    from cliplab.train.config.io import differences_from_defaults, resolve_config

    config = resolve_config(None, {"loop.batch_size": 8, "data.dataset_type": "csv", "data.train_data": "x.tsv",
                                   "model.overrides": {"vision.width": 16}, "loop.epochs": 5,
                                   "objectives.contrastive.decoupled": True})
    assert differences_from_defaults(config) == {"model.overrides": {"vision.width": 16}, "data.dataset_type": "csv",
                                                 "data.train_data": "x.tsv", "loop.batch_size": 8,
                                                 "objectives.contrastive.decoupled": True}
    assert differences_from_defaults(resolve_config()) == {}


def test_the_data_section_of_a_run_config_reads_without_the_other_sections_needs(tmp_path, monkeypatch):
    import importlib.util

    from cliplab.train.config.io import read_data_section

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"data": {"dataset_type": "csv", "train_data": "t.tsv", "val_data": "v.tsv"},
                                "logging": {"wandb": True}}))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "wandb" else real(name, *rest))
    with pytest.raises(ConfigError, match="needs the wandb package"):  # the whole config does not build here
        config_from_dict(load_config_file(path))
    data = read_data_section(path)
    assert (data.dataset_type, data.train_data, data.val_data) == ("csv", "t.tsv", "v.tsv")
    path.write_text(json.dumps({"data": {"dataset_type": "csv", "train_data": "t.tsv", "csv_separator": "ab"}}))
    with pytest.raises(ConfigError, match="config section 'data': csv_separator must be one character"):
        read_data_section(path)


def test_the_default_runs_slimmed_tiny_has_the_parameters_the_docs_give():
    # docs/models.md gave only the registered tiny's 0.83M, while the default run printed 245,201.
    from pathlib import Path

    from cliplab.models import create_model

    setup = TrainConfig().model
    count = sum(parameter.numel() for parameter in create_model(setup.name, **setup.overrides).parameters())
    docs = (Path(__file__).resolve().parent.parent / "docs" / "models.md").read_text()
    assert count == 421_137 and "0.42M parameters (421,137)" in docs
