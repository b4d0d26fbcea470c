"""Fine-tuning a pretrained checkpoint at another input size (`train.input_size`): the run's model is
the checkpoint's with its position tables resized, its tokenizer made to the new context, its patch
dropout on; it trains, saves and resumes at that size; a model on meta (FSDP2, resume) reads the
same resized weights; sizes the model cannot take are one line naming the key."""

import pytest
import torch

from cliplab.cli import main
from cliplab.model_io import load_model
from cliplab.models.resized_model import CONTEXT_EXTENSIONS, InputResize, resized_config
from cliplab.pretrained.loaders import fill_model
from cliplab.train import TrainHooks, train
from cliplab.train.config import ConfigError, ModelSetupConfig
from cliplab.train.setup.input_size import forced_config, resize_pretrained

from finetune_fixtures import clip_loss_of, finetune_config, hub, manifest  # noqa: F401 (module fixtures)
from train_helpers import assert_same_final_checkpoint

torch.set_num_threads(2)
FORCED = {"force_image_size": 48, "force_context_length": 100, "context_extension": "longclip"}


def test_a_fine_tune_at_another_size_starts_from_the_resized_checkpoint(hub, manifest, tmp_path, capsys):
    batches, losses = [], []
    hooks = TrainHooks(after_batches=lambda step, read: batches.append(read),
                       modify_loss=lambda step, output: losses.append(output.total.detach().clone()) or output)
    result = train(finetune_config(tmp_path, manifest, hub, steps=2, **FORCED), hooks=hooks)
    images, tokens = batches[0][0]["images"], batches[0][0]["tokens"]
    assert images.shape[-2:] == (48, 48) and tokens.shape[1] == 100
    pretrained = load_model(hub, output_dict=True).model
    expected = resize_pretrained(pretrained, ModelSetupConfig(pretrained=str(hub), **FORCED), None).model
    with torch.no_grad():
        assert torch.equal(losses[0], clip_loss_of(expected, images, tokens))
    out = capsys.readouterr().out
    assert (f"from the pretrained checkpoint {hub} (open_clip_hub), resized (vision_tower.position_embedding [17, 32] "
            "-> [37, 32]; text_tower.position_embedding [77, 32] -> [100, 32]), with its weights") in out
    assert (f"tokenizer: openai_bpe, 49408 ids, context 100; from the pretrained checkpoint {hub}, made to context "
            "100 (--force-context-length)") in out
    assert "preprocessing: 48x48 bilinear" in out
    saved = load_model(result.run_dir)
    assert (saved.model.config.vision.image_size, saved.model.config.text.context_length) == (48, 100)
    assert saved.tokenizer.context_length == 100


def test_a_resized_fine_tune_resumes_exactly(hub, manifest, tmp_path):
    train(finetune_config(tmp_path, manifest, hub, name="whole", steps=3, **FORCED))
    train(finetune_config(tmp_path, manifest, hub, name="resumed", steps=2, **FORCED))
    resumed = finetune_config(tmp_path, manifest, hub, name="resumed", steps=3, **FORCED)
    resumed.checkpoint.resume = "latest"
    resumed.checkpoint.allow_config_change = ("loop.epochs",)  # constant lr: the schedule does not move
    train(resumed)
    assert_same_final_checkpoint(tmp_path / "resumed", tmp_path / "whole", steps=3)


def test_patch_dropout_trains_a_pretrained_vit(hub, manifest, tmp_path):
    result = train(finetune_config(tmp_path, manifest, hub, steps=2, force_patch_dropout=0.5))
    assert load_model(result.run_dir).model.config.vision.patch_dropout == 0.5
    assert result.summary["steps"] == 2


def test_a_model_on_meta_reads_the_resized_weights(hub):
    setup = ModelSetupConfig(pretrained=str(hub), **FORCED)
    eager = resize_pretrained(load_model(hub).model, setup, None).model
    on_meta = load_model(hub, device="meta")
    resized = resize_pretrained(on_meta.model, setup, on_meta.weights)
    filled = fill_model(resized.model, torch.device("cpu"), resized.weights())
    for name, tensor in eager.state_dict().items():
        assert torch.equal(filled.state_dict()[name], tensor), name


def test_forced_keys_that_change_nothing_keep_the_model(hub):
    model = load_model(hub).model
    same = ModelSetupConfig(pretrained=str(hub), force_image_size=32, force_context_length=77)
    assert resize_pretrained(model, same, None).model is model
    assert forced_config(model.config, same) == model.config


@pytest.mark.parametrize("setup, message", [
    ({"force_image_size": 50}, r"'model.force_image_size' does not fit the model: vision.image_size \(50\) must be "
                               r"divisible by vision.patch_size \(8\)"),
    ({"force_context_length": 60, "context_extension": "longclip"},
     "'model.force_context_length' does not fit the model with context_extension 'longclip': Long-CLIP stretching "
     "keeps the first 20 of at least 22 positions and lengthens the table"),
    ({"context_extension": "longclip"}, "'context_extension' needs force_context_length"),
])
def test_sizes_the_model_cannot_take_name_the_key(hub, setup, message):
    with pytest.raises(ConfigError, match=message):
        resize_pretrained(load_model(hub).model, ModelSetupConfig(pretrained=str(hub), **setup), None)


def test_the_cli_says_it_in_one_line(hub, manifest, tmp_path, capsys):
    code = main(["train", "--pretrained", str(hub), "--dataset-type", "csv", "--train-data", str(manifest),
                 "--logs", str(tmp_path), "--max-steps", "1", "--batch-size", "8", "--workers", "0",
                 "--force-image-size", "50"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "'model.force_image_size' does not fit the model" in err


def test_the_context_extensions_are_the_configs_choices():
    from cliplab.train.config import CONTEXT_EXTENSIONS as CONFIG_CHOICES

    assert tuple(CONTEXT_EXTENSIONS) == CONFIG_CHOICES


def test_the_resize_of_open_clip_configs_is_exactly_the_forced_config(hub):
    config = load_model(hub).model.config
    forced = forced_config(config, ModelSetupConfig(pretrained=str(hub), **FORCED))
    assert forced == resized_config(resized_config(config, image_size=48), context_length=100)
    assert InputResize(config, forced).describe()[0].startswith("vision_tower.position_embedding")
