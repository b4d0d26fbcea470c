"""What the model config alone cannot know about a freshly created model: its input size
(`force_image_size`) and the image normalisation that fits the run's data.

The tiny model configs normalise with Fashion-MNIST's grayscale statistics; on data whose source
(`cliplab.data.sources`, its `statistics`) has others (csv, webdataset, parquet: colour images) a
run normalises with that source's instead, OpenAI CLIP's mean and std, the statistics of the
photographs CLIP-family models are usually trained on, known before any image is read and the same
on every rank and at every resume. `image_mean` / `image_std` choose others; a
model config whose statistics are not Fashion-MNIST's keeps them. The choice is printed at start-up
(`model_setup.describe_run_inputs`) and saved with the model (its `preprocess` section), so
`cliplab.load` preprocesses as training did. A pretrained checkpoint brings its own preprocessing
(`ModelSetupConfig` refuses these keys beside `pretrained`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cliplab.data.sources import SOURCES, data_source
from cliplab.data.transforms import PreprocessConfig
from cliplab.models.registry import UnknownModelError, get_model_config
from cliplab.train.config import ConfigError, ModelSetupConfig
from cliplab.train.setup.input_size import forced_config, forced_overrides


@dataclass(frozen=True)
class ModelPlan:
    """overrides: what `create_model` gets (the section's own, plus image size and normalisation);
    origin: where the size and the normalisation come from, in words (the start-up line's "from")."""

    overrides: dict[str, Any]
    origin: str


def _model_config(name: str, overrides: dict[str, Any]):
    """The ModelConfig of `name` with `overrides`; a ConfigError naming `model` when it does not build."""
    try:
        return get_model_config(name, **overrides)
    except UnknownModelError as error:
        raise ConfigError("model.name", name, f"(--model) names no model: {error.hint}") from None
    except ValueError as error:
        raise ConfigError("model", name, f"does not build a {name} model: {error}") from None


def _fitting_statistics(preprocess: PreprocessConfig, name: str, dataset_type: str):
    """(mean, std, why) that fit `dataset_type` data for a model whose config normalises as `preprocess`:
    a config with a built-in source's statistics (the tiny configs: Fashion-MNIST's) takes those of
    the data's source instead, any other config keeps its own."""
    fits = data_source(dataset_type).statistics
    config_source = next((source for source in SOURCES if source.built_in and (
        source.statistics.mean, source.statistics.std) == (preprocess.mean, preprocess.std)), None)
    if config_source is not None and config_source.statistics != fits:
        return fits.mean, fits.std, (
            f"{fits.name} statistics: the {name} config's are {config_source.statistics.name} ones, which do "
            f"not fit {dataset_type} images; --image-mean/--image-std choose others")
    return preprocess.mean, preprocess.std, f"the model config {name}"


def plan_model(setup: ModelSetupConfig, dataset_type: str) -> ModelPlan:
    """The overrides and the preprocessing origin of a run on `dataset_type` data (module docstring)."""
    overrides = dict(setup.overrides)
    preprocess = forced_config(_model_config(setup.name, overrides), setup).preprocess
    overrides.update(forced_overrides(setup))
    mean, std, why = _fitting_statistics(preprocess, setup.name, dataset_type)
    given = [flag for flag, value in (("--image-mean", setup.image_mean), ("--image-std", setup.image_std))
             if value is not None]
    if given:
        mean, std = setup.image_mean or mean, setup.image_std or std
        why = "as given (" + ", ".join(given) + ")" + ("" if len(given) == 2 else f"; the other from {why}")
    overrides["preprocess.mean"], overrides["preprocess.std"] = list(mean), list(std)
    forced = ", size from --force-image-size" if setup.force_image_size is not None else ""
    return ModelPlan(overrides=overrides, origin=why + forced)
