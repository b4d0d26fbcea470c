"""LoRA in a run: what trains (the adapters, and what --lock-* leaves of the rest), a run whose frozen
weights stay bit for bit, its checkpoint loaded and exported merged (equal to the adapted model within
1e-5), and LoRA with an EMA under DDP and FSDP2 on 2 real gloo processes."""

import json
import math

import pytest
import torch
from safetensors.torch import load_file

import cliplab
from cliplab.cli import main
from cliplab.distributed.launch import run_on_workers
from cliplab.file_names import DCP_SHARDS_DIR
from cliplab.models import build_model
from cliplab.models.lora import add_lora, is_adapter_name, read_lora_spec
from cliplab.pretrained.cliplab_bundle import read_config
from cliplab.pretrained.dcp_reader import DcpModelReader
from cliplab.train import train
from cliplab.train.checkpointing.manager import CheckpointManager
from cliplab.train.config import EmaConfig, LoraConfig, ModelSetupConfig
from cliplab.train.setup.model import build_training_model

from train_helpers import SMALL_MODEL, logged_losses, small_config


def _trained(lora: LoraConfig, **setup) -> set[str]:
    torch.manual_seed(0)
    built = build_training_model(ModelSetupConfig(overrides=dict(SMALL_MODEL), **setup), torch.device("cpu"),
                                 lora=lora)
    return {name for name, parameter in built.model.named_parameters() if parameter.requires_grad}


def test_only_the_adapters_train_and_what_lock_leaves_of_the_rest():
    both = _trained(LoraConfig(rank=2))
    assert both == {name for name in both if is_adapter_name(name)} | {"logit_scale"}
    assert any(name.startswith("vision_tower.") for name in both) and any(name.startswith("text_tower.") for name in both)

    text_only = _trained(LoraConfig(rank=2, text_only=True), lock_image=True)
    assert not any(name.startswith(("vision_tower.", "image_projection.")) for name in text_only)
    assert {name for name in text_only if name.startswith("text_tower.")} == {
        name for name in text_only if is_adapter_name(name)}

    image_only = _trained(LoraConfig(rank=2, image_only=True))
    plain = _trained(LoraConfig())
    text_side = {name for name in plain if name.startswith(("text_tower.", "text_projection."))}
    assert text_side <= image_only  # the text tower trains whole, as without LoRA
    assert {name for name in image_only if name.startswith("vision_tower.")} == {
        name for name in image_only if is_adapter_name(name)}
    assert "image_projection.weight" not in image_only


def _lora_config(logs, name, steps=6, world_size=1, fsdp=False):
    """`steps` steps of LoRA rank 4 with an EMA and layer decay, checkpoints every `steps // 2`."""
    config = small_config(logs, name=name, steps=steps, batch_size=8 // world_size)
    config.lora = LoraConfig(rank=4, alpha=8)
    config.ema = EmaConfig(decay=0.8)
    config.optim.layer_decay = 0.8
    config.optim.lr = 5e-3
    config.loss.gather_with_grad = True  # every rank logs the loss of the whole global batch
    config.distributed.fsdp = fsdp
    config.checkpoint.save_every_steps = steps // 2
    return config


def test_a_lora_run_keeps_its_weights_and_loads_and_exports_merged(tmp_path):
    result = train(_lora_config(tmp_path, "run"))
    checkpoint = CheckpointManager(tmp_path / "run" / "checkpoints", keep=2).latest()
    spec = read_lora_spec(checkpoint)
    assert spec.rank == 4 and spec.alpha == 8 and json.loads((checkpoint / "lora.json").read_text())["rank"] == 4
    weights = load_file(checkpoint / "model.safetensors")
    torch.manual_seed(0)  # the run's initial weights: the same seed, the same build
    initial = build_model(read_config(checkpoint / "config.json")).state_dict()
    for name, value in weights.items():
        if ".base_layer." in name or name.startswith(("vision_tower.", "text_tower.", "image_projection.",
                                                      "text_projection.")) and not is_adapter_name(name):
            assert torch.equal(value, initial[name.replace(".base_layer.", ".")]), name  # frozen, bit for bit
    assert any(not torch.equal(value, torch.zeros_like(value)) for name, value in weights.items() if ".lora_B." in name)

    # the adapted model, rebuilt from the files, against cliplab.load's merged one
    adapted = build_model(read_config(checkpoint / "config.json"))
    add_lora(adapted, spec)
    adapted.load_state_dict(weights)
    merged, _, _ = cliplab.load(tmp_path / "run")
    images, tokens = torch.rand(4, 3, 28, 28), torch.randint(1, 200, (4, 20))
    with torch.no_grad():
        for ours, theirs in zip(merged(images, tokens), adapted.eval()(images, tokens)):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    assert main(["export", str(tmp_path / "run"), "--format", "bundle", "--out", str(tmp_path / "plain")]) == 0
    exported = load_file(tmp_path / "plain" / "model.safetensors")
    assert not (tmp_path / "plain" / "lora.json").exists() and exported.keys() == initial.keys()
    assert all(torch.equal(exported[name], value) for name, value in merged.state_dict().items())
    assert result.summary["steps"] == 6


DISTRIBUTED_STEPS = 4


def _ddp_fsdp_runs(rank, world_size, logs):
    train(_lora_config(logs, "ddp", DISTRIBUTED_STEPS, world_size))
    fsdp = _lora_config(logs, "fsdp", DISTRIBUTED_STEPS, world_size, fsdp=True)
    fsdp.model.tokenizer = str(logs / "ddp")  # the BPE the DDP run trained on the same captions
    train(fsdp)
    resumed = _lora_config(logs, "fsdp_resumed", DISTRIBUTED_STEPS, world_size, fsdp=True)
    resumed.checkpoint.resume = str(logs / "fsdp" / "checkpoints" / f"step_{DISTRIBUTED_STEPS // 2:07d}")
    train(resumed)


@pytest.mark.slow  # two spawned processes, three runs: about 40 s on a busy 2-core machine
def test_lora_and_the_ema_train_under_ddp_and_fsdp2(tmp_path):
    run_on_workers(_ddp_fsdp_runs, 2, tmp_path, timeout_s=600)
    ddp, fsdp = (list(logged_losses(tmp_path / name).values()) for name in ("ddp", "fsdp"))
    assert len(ddp) == len(fsdp) == DISTRIBUTED_STEPS and ddp[0] == fsdp[0]
    assert all(math.isclose(ours, theirs, rel_tol=1e-4) for ours, theirs in zip(fsdp, ddp)), (fsdp, ddp)
    checkpoints = {name: CheckpointManager(tmp_path / name / "checkpoints", keep=2).latest()
                   for name in ("ddp", "fsdp", "fsdp_resumed")}
    assert (checkpoints["fsdp"] / "lora.json").is_file() and (checkpoints["fsdp"] / DCP_SHARDS_DIR).is_dir()
    for ema in (False, True):  # the sharded checkpoint's model and EMA, merged, follow DDP's
        ours, _, _ = cliplab.load(checkpoints["fsdp"], ema=ema)
        theirs, _, _ = cliplab.load(checkpoints["ddp"], ema=ema)
        for name, value in theirs.state_dict().items():
            torch.testing.assert_close(ours.state_dict()[name], value, rtol=1e-3, atol=1e-5, msg=name)
    # resumed half-way, the FSDP2 run replays its second half exactly, EMA included
    assert list(logged_losses(tmp_path / "fsdp_resumed").values()) == fsdp[DISTRIBUTED_STEPS // 2:]
    for prefix in ("model.", "ema."):
        readers = [DcpModelReader(checkpoints[name] / DCP_SHARDS_DIR, prefix=prefix) for name in ("fsdp", "fsdp_resumed")]
        assert readers[0].shapes.keys() == readers[1].shapes.keys()
        assert all(torch.equal(readers[0].read(name), readers[1].read(name)) for name in list(readers[0].shapes))
