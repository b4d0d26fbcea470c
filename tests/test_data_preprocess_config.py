"""PreprocessConfig: validation, open_clip's preprocess_cfg and Hugging Face's image processor
configs both ways, checked against the real classes."""

import json
from dataclasses import asdict

import pytest

from cliplab.data.preprocess_config import (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PreprocessConfig,
                                            read_hf_image_processor, write_hf_image_processor)
from cliplab.errors import UserError
from reference_libraries import open_clip, transformers


def test_sizes_and_new_fields():
    assert PreprocessConfig(image_size=[12, 12]).image_size == 12
    config = PreprocessConfig(image_size=(12, 20))
    assert config.image_size == (12, 20) and config.size_hw == (12, 20)
    assert PreprocessConfig(image_size=9).size_hw == (9, 9)
    assert PreprocessConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"image_size must be a positive int or a pair of them \(H, W\)"):
        PreprocessConfig(image_size=(12, 0))
    with pytest.raises(ValueError, match=r"fill_color must be an int in \[0, 255\]"):
        PreprocessConfig(image_size=8, fill_color=256)
    with pytest.raises(ValueError, match="resize_mode must be one of"):
        PreprocessConfig(image_size=8, resize_mode="crop")


def test_open_clip_defaults_and_round_trip():
    defaults = {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(open_clip().transform.PreprocessCfg()).items()}
    assert PreprocessConfig.from_open_clip({}, 224).to_open_clip() == defaults
    for config in (PreprocessConfig(image_size=(256, 192), mean=(0.5,) * 3, std=(0.25,) * 3,
                                    interpolation="bilinear", resize_mode="longest", fill_color=128),
                   PreprocessConfig(image_size=384, resize_mode="squash")):
        assert PreprocessConfig.from_open_clip(config.to_open_clip(), 1) == config


def test_open_clip_spellings():
    config = PreprocessConfig.from_open_clip({"mean": 0.5, "std": [0.5, 0.5, 0.5], "interpolation": "random",
                                              "crop_pct": 0.9, "resize_mode": None}, image_size=64)
    assert (config.image_size, config.mean, config.interpolation, config.resize_mode) == (
        64, (0.5, 0.5, 0.5), "bicubic", "shortest")  # "random" evaluates bicubic; unknown keys ignored
    with pytest.raises(UserError, match="preprocess_cfg.mode must be 'RGB'"):
        PreprocessConfig.from_open_clip({"mode": "L"}, 64)
    with pytest.raises(UserError, match="preprocess_cfg: resize_mode must be one of"):
        PreprocessConfig.from_open_clip({"resize_mode": "crop"}, 64)
    with pytest.raises(UserError, match="interpolation 'nearest' has no open_clip spelling"):
        PreprocessConfig(image_size=8, interpolation="nearest").to_open_clip()


def test_hf_processor_defaults_read_as_their_geometry():
    library = transformers()
    clip = PreprocessConfig.from_hf_image_processor(library.CLIPImageProcessor().to_dict())
    assert clip == PreprocessConfig(image_size=224, mean=OPENAI_CLIP_MEAN, std=OPENAI_CLIP_STD)
    siglip = PreprocessConfig.from_hf_image_processor(library.SiglipImageProcessor().to_dict())
    assert siglip == PreprocessConfig(image_size=224, mean=(0.5,) * 3, std=(0.5,) * 3, resize_mode="squash")


@pytest.mark.parametrize("config, processor_type", [
    (PreprocessConfig(image_size=96, interpolation="bilinear", mean=(0.1, 0.2, 0.3)), "CLIPImageProcessor"),
    (PreprocessConfig(image_size=(64, 80), resize_mode="squash", interpolation="nearest"), "CLIPImageProcessor"),
    (PreprocessConfig(image_size=64, resize_mode="squash", mean=(0.5,) * 3, std=(0.5,) * 3), "SiglipImageProcessor")])
def test_hf_processor_round_trip_through_the_real_class(config, processor_type):
    values = config.to_hf_image_processor(processor_type)
    processor = getattr(transformers(), processor_type)(**values)
    assert PreprocessConfig.from_hf_image_processor(processor.to_dict()) == config


def test_hf_files_and_what_they_cannot_hold(tmp_path):
    path = tmp_path / "preprocessor_config.json"
    config = PreprocessConfig(image_size=32, interpolation="bilinear")
    write_hf_image_processor(config, path)
    assert read_hf_image_processor(path) == config
    assert json.loads(path.read_text())["size"] == {"shortest_edge": 32}
    path.write_text(json.dumps({"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224}}))
    with pytest.raises(UserError, match=r"preprocessor_config.json: image processor size .* is not supported"):
        read_hf_image_processor(path)
    with pytest.raises(UserError, match="resample 1 is not supported"):
        PreprocessConfig.from_hf_image_processor({"resample": 1})
    with pytest.raises(UserError, match="do_normalize=False is not supported"):
        PreprocessConfig.from_hf_image_processor({"do_normalize": False})
    with pytest.raises(UserError, match="resize_mode 'longest' with image_size 32 has no CLIPImageProcessor spelling"):
        PreprocessConfig(image_size=32, resize_mode="longest").to_hf_image_processor()
    with pytest.raises(UserError, match="has no SiglipImageProcessor spelling"):
        config.to_hf_image_processor("SiglipImageProcessor")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(UserError, match="broken.json: cannot read it as JSON"):
        read_hf_image_processor(tmp_path / "broken.json")
