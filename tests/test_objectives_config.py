import pytest

from cliplab.objectives.config import ObjectivesConfig


def test_defaults_are_all_off_with_x_clip_weights():
    config = ObjectivesConfig()
    assert not config.any_enabled
    assert (config.mlm.weight, config.simsiam.weight, config.simclr.weight, config.multiview.weight) == (
        0.05, 0.05, 0.05, 0.1)
    assert (config.mlm.mask_probability, config.mlm.mask_token_fraction, config.mlm.random_token_fraction) == (
        0.15, 0.8, 0.1)


def test_round_trip_through_a_plain_dict():
    config = ObjectivesConfig.from_dict({
        "contrastive": {"decoupled": True},
        "filip": {"enabled": True, "tile_size": 4},
        "augment": {"crop_scale": [0.3, 1.0]},
    })
    values = config.to_dict()
    assert values["augment"]["crop_scale"] == [0.3, 1.0]
    assert ObjectivesConfig.from_dict(values) == config
    assert config.contrastive.replaces_standard_loss and config.any_enabled


@pytest.mark.parametrize("values, message", [
    ({"mlm": {"enabled": True, "weight": 0.0}}, "objectives.mlm.weight"),
    ({"mlm": {"mask_probability": 1.5}}, "objectives.mlm.mask_probability"),
    ({"mlm": {"mask_token_fraction": 0.95}}, "objectives.mlm.random_token_fraction"),
    ({"filip": {"tile_size": 0}}, "objectives.filip.tile_size"),
    ({"simclr": {"temperature": -1.0}}, "objectives.simclr.temperature"),
    ({"multiview": {"augment_images": False, "augment_texts": False}}, "objectives.multiview.augment_texts"),
    ({"augment": {"crop_scale": [0.9, 0.5]}}, r"objectives.augment.crop_scale\[1\]"),
    ({"contrastive": {"decoupled": 1}}, "objectives.contrastive.decoupled"),
    ({"mlm": {"probability": 0.1}}, "unknown keys"),
    ({"dcl": {}}, "unknown sections"),
])
def test_bad_values_name_the_key(values, message):
    with pytest.raises(ValueError, match=message):
        ObjectivesConfig.from_dict(values)
