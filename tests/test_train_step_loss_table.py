"""The loss table: which loss each model kind trains with, its options, and the outputs it reads."""

import pytest
import torch

from cliplab import losses
from cliplab.models import create_model
from cliplab.train.config import ConfigError, LossConfig
from cliplab.train.parallel.processes import DistributedContext
from cliplab.train.step.loss_table import LOSS_TABLE, build_training_loss, choose_loss

ONE_PROCESS = DistributedContext(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), owns_group=False)
SMALL = {"embed_dim": 16, "vision.width": 16, "text.width": 32, "text.layers": 1, "text.heads": 2}
KIND_MODELS = {"clip": "tiny", "siglip": "tiny-siglip", "coca": "tiny-coca"}


def _model(kind):
    torch.manual_seed(0)
    overrides = dict(SMALL, **({"decoder.heads": 2, "decoder.layers": 1} if kind == "coca" else {}))
    return create_model(KIND_MODELS[kind], output_dict=True, **overrides)


def _batch(model):
    generator = torch.Generator().manual_seed(1)
    size, text = model.config.vision.image_size, model.config.text
    return (torch.randn(4, 3, size, size, generator=generator),
            torch.randint(5, text.vocab_size, (4, text.context_length), generator=generator))


@pytest.mark.parametrize("kind, tiled", sorted(LOSS_TABLE))
def test_each_row_builds_its_loss_and_reads_exactly_outputs_the_model_returns(kind, tiled):
    model = _model(kind)
    config = LossConfig(siglip=kind == "siglip", tiled_loss=tiled)
    training_loss = build_training_loss(config, model.config, ONE_PROCESS)
    choice = LOSS_TABLE[(kind, tiled)]
    assert type(training_loss.loss) is choice.loss_class
    output = model(*_batch(model))
    assert set(choice.outputs) <= set(output)
    # The same value as calling the loss class by hand with those outputs.
    expected = training_loss.loss(**{key: output[key] for key in choice.outputs}, output_dict=True)
    result = training_loss(output)
    assert result.terms.keys() == expected.keys()
    assert torch.equal(result.total, sum(value.float() for value in expected.values()))


def test_coca_gets_its_weights_and_the_text_towers_pad_id():
    model = _model("coca")
    loss = build_training_loss(LossConfig(coca_caption_loss_weight=3.0, coca_contrastive_loss_weight=0.5),
                               model.config, ONE_PROCESS).loss
    assert isinstance(loss, losses.CoCaLoss)
    assert (loss.caption_loss_weight, loss.clip_loss_weight, loss.pad_id) == (3.0, 0.5, model.config.text.pad_id)


def test_options_the_chosen_loss_does_not_take_are_named():
    siglip, coca, clip = _model("siglip").config, _model("coca").config, _model("clip").config
    with pytest.raises(ConfigError, match="'loss.local_loss' is not supported by SigLipLoss"):
        choose_loss(LossConfig(siglip=True, local_loss=True, gather_with_grad=True), siglip)
    with pytest.raises(ConfigError, match="'loss.tiled_loss' is not available for a coca model"):
        choose_loss(LossConfig(tiled_loss=True), coca)
    with pytest.raises(ConfigError, match=r"'loss.siglip' needs a siglip model; this is a clip model \(it has no "
                       r"logit_bias\): remove --siglip, got True"):
        choose_loss(LossConfig(siglip=True), clip)
    with pytest.raises(ConfigError, match=r"'loss.siglip' must be true for a siglip model \(trained with the sigmoid "
                       r"loss and its logit_bias\): add --siglip, got False"):
        choose_loss(LossConfig(), siglip)
    assert choose_loss(LossConfig(tiled_loss=True, tile_size=3), clip).loss_class is losses.TiledClipLoss
