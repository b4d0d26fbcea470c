"""A fresh model's input size and normalisation for the run's data (`model_plan.plan_model`)."""

import pytest

from cliplab.data.sources.fashion_mnist import FASHION_MNIST_MEAN, FASHION_MNIST_STD
from cliplab.data.transforms import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from cliplab.models.registry import get_model_config
from cliplab.train.config import ConfigError, ModelSetupConfig
from cliplab.train.setup.model_plan import plan_model


def _preprocess(setup, plan):
    return get_model_config(setup.name, **plan.overrides).preprocess


@pytest.mark.parametrize("dataset_type", ["csv", "webdataset", "parquet"])
def test_tiny_models_normalise_colour_data_with_the_openai_statistics(dataset_type):
    setup = ModelSetupConfig(name="tiny-vit")
    plan = plan_model(setup, dataset_type)
    preprocess = _preprocess(setup, plan)
    assert (preprocess.mean, preprocess.std) == (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    assert plan.origin == (f"OpenAI CLIP's statistics: the tiny-vit config's are Fashion-MNIST's grayscale ones, which "
                           f"do not fit {dataset_type} images; --image-mean/--image-std choose others")


def test_fashion_mnist_keeps_the_config_statistics():
    setup = ModelSetupConfig(name="tiny")
    plan = plan_model(setup, "fashion-mnist")
    assert (_preprocess(setup, plan).mean, _preprocess(setup, plan).std) == (FASHION_MNIST_MEAN, FASHION_MNIST_STD)
    assert plan.origin == "the model config tiny"


def test_statistics_a_config_chose_itself_are_kept_on_colour_data():
    setup = ModelSetupConfig(name="tiny", overrides={"preprocess.mean": [0.5, 0.5, 0.5]})
    assert _preprocess(setup, plan_model(setup, "csv")).mean == (0.5, 0.5, 0.5)


def test_given_statistics_win_and_the_other_keeps_the_fitting_default():
    setup = ModelSetupConfig(name="tiny", image_mean=(0.1, 0.2, 0.3))
    plan = plan_model(setup, "csv")
    assert (_preprocess(setup, plan).mean, _preprocess(setup, plan).std) == ((0.1, 0.2, 0.3), OPENAI_CLIP_STD)
    assert plan.origin.startswith("as given (--image-mean); the other from OpenAI CLIP's statistics: ")


def test_force_image_size_resizes_the_model_and_its_preprocessing():
    setup = ModelSetupConfig(name="tiny-vit", force_image_size=32)
    config = get_model_config(setup.name, **plan_model(setup, "fashion-mnist").overrides)
    assert config.vision.image_size == config.preprocess.image_size == 32 and config.vision.grid_size == 8
    assert plan_model(setup, "csv").origin.endswith(", size from --force-image-size")


def test_an_image_size_the_model_cannot_take_names_the_key():
    with pytest.raises(ConfigError, match=r"'model.force_image_size' does not fit the model: vision.image_size \(30\) "
                                          r"must be divisible by vision.patch_size \(4\)"):
        plan_model(ModelSetupConfig(name="tiny-vit", force_image_size=30), "csv")


@pytest.mark.parametrize("key, value", [("image_mean", (0.5, 0.5)), ("image_std", (0.2, 0.0, 0.2)),
                                        ("force_image_size", 0)])
def test_bad_image_settings_are_config_errors(key, value):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        ModelSetupConfig(**{key: value})


def test_force_context_length_and_patch_dropout_change_a_fresh_model():
    setup = ModelSetupConfig(name="tiny-vit", force_context_length=48, force_patch_dropout=0.25)
    config = get_model_config(setup.name, **plan_model(setup, "csv").overrides)
    assert (config.text.context_length, config.vision.patch_dropout) == (48, 0.25)


def test_patch_dropout_on_a_tower_without_it_names_the_key():
    with pytest.raises(ConfigError, match="'model.force_patch_dropout' does not fit the model: vision.patch_dropout "
                                          "applies to kind='vit' only"):
        plan_model(ModelSetupConfig(name="tiny", force_patch_dropout=0.5), "csv")


@pytest.mark.parametrize("key, value", [("image_mean", (0.5, 0.5, 0.5)), ("image_std", (0.2, 0.2, 0.2))])
def test_pretrained_weights_keep_their_preprocessing(key, value):
    with pytest.raises(ConfigError, match=f"'{key}'.*cannot change the preprocessing of pretrained weights"):
        ModelSetupConfig(pretrained="some/checkpoint", **{key: value})
