"""The run's model: fine-tuning a pretrained checkpoint (`model.pretrained`, --pretrained) with its
tokenizer and preprocessing, with locked towers, the tiled loss, accumulation, DDP and resume; its
mismatch errors; and open_clip architectures by name, freshly initialised."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cliplab.cli import main
from cliplab.data.tokenizer import Tokenizer
from cliplab.data.tokenizer_hf import hf_tokenizer_from_dir
from cliplab.data.tokenizer_openai import openai_bpe_tokenizer
from cliplab.distributed.launch import run_on_workers
from cliplab.errors import UserError
from cliplab.model_io import load_model, save
from cliplab.models import create_model
from cliplab.pretrained.export import export
from cliplab.train import TrainHooks, resolve_config, train
from cliplab.train.config import ConfigError, ModelSetupConfig
from cliplab.train.setup.model import PretrainedLoadError, build_training_model

from finetune_fixtures import (PREPROCESS_CFG, assert_fine_tune_resumes_exactly, clip_loss_of, finetune_config,
                               hub, manifest)  # noqa: F401 (module fixtures)
from reference_libraries import assert_relative_close, open_clip, reference_mode

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parent.parent


class Recorder:
    """Hooks that keep each step's batches and loss, and the model after the last step."""

    def __init__(self):
        self.batches, self.losses, self.model = [], [], None

    def hooks(self) -> TrainHooks:
        def modify_loss(step, output):
            self.losses.append(output.total.detach().clone())
            return output

        def after_step(step, model):
            self.model = model

        return TrainHooks(modify_loss=modify_loss, after_step=after_step,
                          after_batches=lambda step, batches: self.batches.append(batches))

    def step_inputs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The images and tokens of every micro-batch of step `step`, concatenated."""
        batches = self.batches[step]
        return torch.cat([b["images"] for b in batches]), torch.cat([b["tokens"] for b in batches])


def pretrained_model(hub):
    return load_model(hub, output_dict=True).model


def test_fine_tuning_starts_from_the_checkpoint_with_its_tokenizer_and_preprocessing(hub, manifest, tmp_path, capsys):
    recorder = Recorder()
    result = train(finetune_config(tmp_path, manifest, hub, steps=4), hooks=recorder.hooks())
    images, tokens = recorder.step_inputs(0)
    captions = recorder.batches[0][0]["captions"]
    assert torch.equal(tokens, openai_bpe_tokenizer(77)(captions))  # the checkpoint's tokenizer
    # Each PNG is one colour (i, i // 2, 255 - i) for "caption i": any crop and resize keeps it, so
    # every pixel is (value / 255 - mean) / std with the checkpoint's statistics, at its size.
    assert images.shape == (8, 3, PREPROCESS_CFG["size"], PREPROCESS_CFG["size"])
    for image, caption in zip(images, captions):
        index = int(caption.split()[-1])
        for channel, value in enumerate((index, index // 2, 255 - index)):
            expected = (torch.tensor(value / 255.0) - PREPROCESS_CFG["mean"][channel]) / PREPROCESS_CFG["std"][channel]
            torch.testing.assert_close(image[channel], expected.expand(32, 32), rtol=0, atol=1e-6)
    # The first step's loss is the loaded checkpoint's own (the same computation, in one process).
    with torch.no_grad():
        assert torch.equal(recorder.losses[0], clip_loss_of(pretrained_model(hub), images, tokens))
    assert max(float(loss) for loss in recorder.losses[1:]) < float(recorder.losses[0]) - 0.1  # it learns
    out = capsys.readouterr().out
    assert f"model: clip, 1,642,273 parameters (1,642,273 trainable); from the pretrained checkpoint {hub} " \
           "(open_clip_hub), with its weights" in out
    assert f"tokenizer: openai_bpe, 49408 ids, context 77; from the pretrained checkpoint {hub}" in out
    assert ("preprocessing: 32x32 bilinear, resize shortest, mean (0.5, 0.25, 0.125), std (0.25, 0.5, 0.2); "
            "training: random resized crop scale (0.9, 1), ratio (0.75, 1.333), no flip; from the pretrained "
            f"checkpoint {hub} (open_clip_hub)") in out

    # The saved checkpoint is the fine-tuned model, for cliplab.load and, exported, for open_clip.
    checkpoint = result.summary["checkpoint"]
    loaded = load_model(result.run_dir)
    assert str(loaded.path) == checkpoint and loaded.tokenizer.kind == "openai_bpe"
    for name, tensor in recorder.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name
    exported = tmp_path / "exported"
    assert main(["export", str(result.run_dir), "--format", "open_clip", "--out", str(exported)]) == 0
    reference = open_clip().create_model(f"local-dir:{exported}").eval()
    with torch.no_grad(), reference_mode():
        assert_relative_close(loaded.model.encode_image(images), reference.encode_image(images))
        assert_relative_close(loaded.model.encode_text(tokens), reference.encode_text(tokens))


def _trainable_parts(model):
    return {"image": [p for n, p in model.named_parameters() if n.startswith(("vision_tower.", "image_projection."))],
            "text": [p for n, p in model.named_parameters() if n.startswith(("text_tower.", "text_projection."))]}


@pytest.mark.parametrize("locked, flags", [("image", {}), ("text", {"lock_text_freeze_layer_norm": True})])
def test_a_locked_tower_keeps_the_pretrained_weights_and_outputs(locked, flags, hub, manifest, tmp_path):
    """open_clip's LiT lock (every parameter of the tower, its norms included) on loaded weights.
    Before: --lock-image alone left the image tower's norm layers training (outputs moved 6e-4)."""
    recorder = Recorder()
    config = finetune_config(tmp_path, manifest, hub, steps=2, **{f"lock_{locked}": True, **flags})
    train(config, hooks=recorder.hooks())
    pretrained, trained = pretrained_model(hub), recorder.model
    before, after = _trainable_parts(pretrained), _trainable_parts(trained)
    unlocked = "text" if locked == "image" else "image"
    assert all(torch.equal(a, b) for a, b in zip(before[locked], after[locked]))
    assert not any(torch.equal(a, b) for a, b in zip(before[unlocked], after[unlocked]))
    images, tokens = recorder.step_inputs(0)
    encode = "encode_image" if locked == "image" else "encode_text"
    with torch.no_grad():
        outputs = [getattr(model.eval(), encode)(images if locked == "image" else tokens, normalize=False)
                   for model in (pretrained, trained)]
    assert torch.equal(*outputs)


@pytest.mark.parametrize("options", [{"tiled": True}, {"accum_freq": 2}], ids=["tiled", "accum"])
def test_tiled_loss_and_accumulation_start_from_the_checkpoints_loss(options, hub, manifest, tmp_path):
    """The tiled loss on one batch of 8, and 2 accumulated micro-batches of 4, equal the dense
    loss of the loaded model on those 8 samples (fp32 reassociation: rtol 1e-6)."""
    recorder = Recorder()
    config = finetune_config(tmp_path, manifest, hub, steps=1, batch_size=4 if "accum_freq" in options else 8)
    config.loop.accum_freq = options.get("accum_freq", 1)
    if options.get("tiled"):
        config.loss.tiled_loss, config.loss.tile_size = True, 3
    train(config, hooks=recorder.hooks())
    assert len(recorder.batches[0]) == config.loop.accum_freq
    with torch.no_grad():
        direct = clip_loss_of(pretrained_model(hub), *recorder.step_inputs(0))
    torch.testing.assert_close(recorder.losses[0], direct, rtol=1e-6, atol=0)


def test_a_resumed_fine_tune_continues_from_its_own_weights(hub, manifest, tmp_path):
    recorder = Recorder()
    assert_fine_tune_resumes_exactly(tmp_path, manifest, hub, hooks=recorder.hooks())
    assert len(recorder.losses) == 2  # steps 3 and 4


def _fine_tune_on_ranks(rank, world_size, logs, manifest, hub, batch_size, name):
    # First a checkpoint only the last rank can read (missing on the others' node): every rank raises.
    readable_here = hub if rank == world_size - 1 else f"{logs}/not-on-this-node"
    try:
        build_training_model(ModelSetupConfig(pretrained=readable_here), torch.device("cpu"))
        refusal = None
    except PretrainedLoadError as error:
        refusal = str(error)
    recorder = Recorder()
    config = finetune_config(logs, manifest, hub, name=name, steps=2, batch_size=batch_size)
    config.loss.local_loss = config.loss.gather_with_grad = True
    result = train(config, hooks=recorder.hooks())
    return [float(loss) for loss in recorder.losses], str(result.run_dir), refusal


def test_two_processes_fine_tune_like_one_process_with_the_global_batch(hub, manifest, tmp_path):
    """With --local-loss --gather-with-grad each rank's loss covers its own rows against all columns,
    so the ranks' mean is the one-process loss of the global batch. A checkpoint that one rank
    cannot read stops both with that rank's error, at once."""
    args = (str(tmp_path), str(manifest), str(hub))
    one_losses, one_dir, _ = _fine_tune_on_ranks(0, 1, *args, 8, "one")
    (rank0_losses, two_dir, refusal0), (rank1_losses, _, refusal1) = run_on_workers(
        _fine_tune_on_ranks, 2, *args, 4, "two", timeout_s=240)
    assert refusal0 == refusal1
    assert refusal0.startswith(f"--pretrained {tmp_path}/not-on-this-node (model.pretrained): checkpoint path ")
    two_losses = (torch.tensor(rank0_losses) + torch.tensor(rank1_losses)) / 2
    torch.testing.assert_close(two_losses, torch.tensor(one_losses), rtol=1e-5, atol=0)
    one, two = load_model(one_dir).model.state_dict(), load_model(two_dir).model.state_dict()
    for name in one:
        # Adam divides by sqrt(v), which magnifies fp32 reduction-order differences early on.
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=2e-5, msg=name)


def test_a_hugging_face_directory_fine_tunes_with_its_own_tokenizer(hub, manifest, tmp_path):
    """The hub's model exported as transformers' CLIPModel directory (CLIPTokenizer files, which pad
    with end-of-text) starts from its own loss, with its own tokenizer."""
    loaded = load_model(hub)
    hf_dir = export(loaded.model, loaded.tokenizer, tmp_path / "hf", format="hf")
    recorder = Recorder()
    train(finetune_config(tmp_path, manifest, hf_dir, steps=1), hooks=recorder.hooks())
    images, tokens = recorder.step_inputs(0)
    assert torch.equal(tokens, hf_tokenizer_from_dir(hf_dir, 77)(recorder.batches[0][0]["captions"]))
    assert int(tokens[0, -1]) == 49407  # transformers' CLIP padding, not open_clip's 0
    with torch.no_grad():
        assert torch.equal(recorder.losses[0], clip_loss_of(pretrained_model(hf_dir), images, tokens))


def test_an_open_clip_epoch_file_loads_with_the_architecture_named(hub, tmp_path):
    state = {f"module.{name}": tensor for name, tensor in load_file(hub / "open_clip_model.safetensors").items()}
    epoch_file = tmp_path / "epoch_3.pt"
    torch.save({"epoch": 3, "state_dict": state}, epoch_file)
    built = build_training_model(ModelSetupConfig(name=str(hub / "open_clip_config.json"), pretrained=str(epoch_file)),
                                 torch.device("cpu"))
    for name, tensor in pretrained_model(hub).state_dict().items():
        assert torch.equal(built.model.state_dict()[name], tensor), name
    assert built.model.training and built.tokenizer.kind == "openai_bpe"
    with pytest.raises(PretrainedLoadError, match=rf"^--pretrained {epoch_file} \(model.pretrained\): .*needs its "
                                                  r"architecture"):
        build_training_model(ModelSetupConfig(pretrained=str(epoch_file)), torch.device("cpu"))
    with pytest.raises(PretrainedLoadError, match=rf"^--pretrained {epoch_file} \(model.pretrained\) with --model "
                                                  r"ViT-B-32: .*does not match the architecture: .*mis-shaped: "
                                                  r"visual.class_embedding is \[32\], expected \[768\]"):
        build_training_model(ModelSetupConfig(name="ViT-B-32", pretrained=str(epoch_file)), torch.device("cpu"))


def test_an_architecture_that_does_not_fit_the_checkpoint_is_one_clear_error(hub, tmp_path, capsys):
    code = main(["train", "--logs", str(tmp_path), "--name", "wrong", "--dataset-type", "csv", "--train-data",
                 "unused.tsv", "--pretrained", str(hub), "--model", "ViT-B-16"])
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert error[0].startswith(f"cliplab train: error: --pretrained {hub} (model.pretrained) with --model ViT-B-16: "
                               f"model='ViT-B-16' differs from the architecture {hub} holds (")
    with pytest.raises(ConfigError, match=r"'model.overrides' cannot change the architecture of pretrained weights"):
        resolve_config(None, {"model.pretrained": str(hub), "model.overrides": {"embed_dim": 8}})


def test_siglip_weights_without_siglip_loss_are_refused_naming_the_flag(manifest, tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny-siglip", embed_dim=16, vision={"width": 16}, text={"width": 32, "heads": 2, "layers": 1})
    tokenizer = Tokenizer.train([f"caption {i}" for i in range(8)], vocab_size=300,
                                context_length=model.config.text.context_length)
    bundle = save(model, tokenizer, tmp_path / "siglip")
    with pytest.raises(ConfigError, match=r"'loss.siglip' must be true for a siglip model .*: add --siglip"):
        train(finetune_config(tmp_path, manifest, bundle, steps=1))
    recorder = Recorder()
    config = finetune_config(tmp_path, manifest, bundle, name="siglip", steps=1)
    config.loss.siglip = True
    train(config, hooks=recorder.hooks())
    assert torch.equal(recorder.batches[0][0]["tokens"], tokenizer(recorder.batches[0][0]["captions"]))


def test_vit_b_32_config_trains_from_scratch_on_a_caption_csv_with_the_openai_bpe(manifest, tmp_path):
    """configs/vit-b-32-csv.yaml as written (open_clip's ViT-B-32, no tokenizer file), on a CSV,
    with the model and the run shrunk by overrides."""
    overrides = {"logging.logs": str(tmp_path), "logging.name": "vitb32", "data.train_data": str(manifest),
                 "data.val_data": str(manifest), "data.workers": 0, "loop.batch_size": 4, "loop.max_steps": 1,
                 "loop.threads": 1, "logging.progress_bar": False, "logging.tensorboard": False,
                 "model.overrides": {"embed_dim": 32, "vision.width": 64, "vision.heads": 2, "vision.layers": 1,
                                     "vision.image_size": 32, "preprocess.image_size": 32, "text.width": 64,
                                     "text.heads": 2, "text.layers": 1}}
    recorder = Recorder()
    result = train(resolve_config(ROOT / "configs" / "vit-b-32-csv.yaml", overrides), hooks=recorder.hooks())
    assert result.summary["steps"] == 1 and "image_to_text_R@1" in result.summary
    batch = recorder.batches[0][0]
    assert torch.equal(batch["tokens"], openai_bpe_tokenizer(77)(batch["captions"]))
    descriptor = json.loads((result.run_dir / "checkpoints" / "step_0000001" / "cliplab_tokenizer.json").read_text())
    assert descriptor == {"kind": "openai_bpe", "context_length": 77}
    text = recorder.model.config.text
    assert (text.vocab_size, text.pool, text.padding_mask) == (49408, "argmax", "none")


def test_a_pretrained_checkpoint_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(UserError, match=rf"^--pretrained {tmp_path}/missing \(model.pretrained\): checkpoint path "
                                        rf"{tmp_path}/missing does not exist"):
        build_training_model(ModelSetupConfig(pretrained=str(tmp_path / "missing")), torch.device("cpu"))
