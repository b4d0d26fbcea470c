"""The Trainer end to end: run directory contents, invariants, and DDP == one process."""

import json
import math

import pytest
import torch

from cliplab.distributed.launch import run_on_workers
from cliplab.model_io import load as load_bundle
from cliplab.train import TrainHooks, train
from cliplab.train.checkpointing.manager import CheckpointManager
from cliplab.train.step.accumulation import LossOutput
from cliplab.train.step.optim import log_scale_upper_bound

from train_helpers import ADDED_TERM_NAMES, ADDED_TERMS, SMALL_HEADS, small_config

TRAIN_KEYS = {"kind", "step", "epoch", "samples_seen", "lr", "loss", "loss/contrastive_loss", "logit_scale",
              "i2t_accuracy", "t2i_accuracy", "local_batch_size", "global_batch_size", "data_wait_s",
              "step_time_s", "samples_per_s", "skipped_samples", "nonfinite_skips", "grad_norm"}
EVAL_KEYS = {"kind", "step", "epoch", "zero_shot_top1", "zero_shot_top5", "zero_shot_per_class",
             "confusion_matrix", "classnames", "zero_shot_count", "image_to_text_R@1", "text_to_image_R@1",
             "image_to_text_mean_rank", "text_to_image_median_rank", "retrieval_count"}


def test_smoke_run_writes_the_run_directory(tmp_path):
    config = small_config(tmp_path, name="smoke", steps=3, evaluate=True)
    config.logging.tensorboard = True
    result = train(config)
    run_dir = tmp_path / "smoke"
    assert result.run_dir == run_dir
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in records if r["kind"] == "train"]
    eval_records = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in train_records] == [1, 2, 3]
    assert all(set(r) == TRAIN_KEYS for r in train_records)
    assert train_records[-1]["samples_seen"] == 24 and train_records[-1]["global_batch_size"] == 8
    assert len(eval_records) == 1 and EVAL_KEYS <= set(eval_records[0])
    assert len(eval_records[0]["confusion_matrix"]) == 10
    assert eval_records[0]["retrieval_count"] == config.eval.retrieval_num_samples  # the chance level's N
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("zero_shot_top1", "zero_shot_top5", "wall_seconds", "steps", "samples_seen", "skipped_samples"):
        assert key in summary, key
    assert summary == result.summary and summary["steps"] == 3
    assert json.loads((run_dir / "config.json").read_text())["loop"]["max_steps"] == 3
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    latest = CheckpointManager(run_dir / "checkpoints", keep=2).latest()
    assert latest.name == "step_0000003"
    model, _, tokenizer = load_bundle(latest)
    assert tokenizer(["a photo of the bag."]).shape[1] == model.config.text.context_length


def test_logit_scale_stays_at_most_ln_100_after_every_step(tmp_path):
    config = small_config(tmp_path, steps=5)
    config.model.overrides["init_logit_scale"] = math.log(100.0) - 0.01
    config.optim.lr = 0.05
    config.optim.warmup = 0
    config.optim.beta1 = 0.0  # each Adam step follows the current gradient's sign
    config.optim.grad_clip_norm = None
    seen, models = [], []

    def push_scale_up(step, output):  # a loss that rewards a larger scale, to hit the clamp
        if not models:
            return output
        return LossOutput(output.total - 1000.0 * models[0].logit_scale, output.terms, output.metrics)

    def after_step(step, model):
        models[:] = [model]
        seen.append(model.logit_scale.item())

    train(config, hooks=TrainHooks(modify_loss=push_scale_up, after_step=after_step))
    assert len(seen) == 5
    assert all(value <= math.log(100.0) for value in seen)
    assert max(seen) == log_scale_upper_bound(100.0, torch.float32).item()  # the clamp was reached


def _train_on_ranks(rank, world_size, logs, batch_size, name):
    config = small_config(logs, name=name, steps=3, batch_size=batch_size)
    config.loss.local_loss = True
    config.loss.gather_with_grad = True
    config.optim.lr = 1e-3
    result = train(config)
    latest = CheckpointManager(result.run_dir / "checkpoints", keep=2).latest() if rank == 0 else None
    return str(latest) if latest else None


def test_two_processes_equal_one_process_with_the_global_batch(tmp_path):
    one = run_on_workers(_train_on_ranks, 1, str(tmp_path), 8, "one", timeout_s=240)[0]
    two = run_on_workers(_train_on_ranks, 2, str(tmp_path), 4, "two", timeout_s=240)[0]
    model_one, _, _ = load_bundle(one)
    model_two, _, _ = load_bundle(two)  # saved under DDP, loads strictly into an unwrapped model
    for (name, a), (_, b) in zip(model_one.state_dict().items(), model_two.state_dict().items()):
        # Adam divides by sqrt(v), which magnifies fp32 reduction-order differences early on.
        torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5, msg=name)
    assert not any(key.startswith(("module.", "_orig_mod.")) for key in model_two.state_dict())


# --- end-of-run ordering ----------------------------------------------------------------------


def test_final_checkpoint_is_saved_before_the_final_evaluation(tmp_path, monkeypatch):
    import cliplab.train.evaluation as evaluation

    def failing_evaluate(*args, **kwargs):
        raise RuntimeError("evaluation failed")

    monkeypatch.setattr(evaluation, "evaluate", failing_evaluate)
    config = small_config(tmp_path, name="evalfails", steps=2, evaluate=True)
    with pytest.raises(RuntimeError, match="evaluation failed"):
        train(config)
    latest = CheckpointManager(tmp_path / "evalfails" / "checkpoints", keep=2).latest()
    assert latest is not None and latest.name == "step_0000002"  # the trained weights survived


# --- the x-clip objectives in the loop -------------------------------------------------------


def _objectives_config(logs, name, sections, *, steps, batch_size=8):
    from cliplab.objectives import ObjectivesConfig

    config = small_config(logs, name=name, steps=steps, batch_size=batch_size)
    config.objectives = ObjectivesConfig.from_dict(sections)
    return config


def _logged_terms(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "train"]


# Every term on, in both modes of the main term: DCL with the extra projection (which replace the
# loop's own loss), or the loop's own ClipLoss plus every added term.
OBJECTIVE_MODES = {
    "replacing": ({"contrastive": {"decoupled": True, "extra_latent_projection": True}, **ADDED_TERMS},
                  ["dcl_loss", *ADDED_TERM_NAMES]),
    "added": (ADDED_TERMS, ["contrastive_loss", *ADDED_TERM_NAMES]),
}


def _train_with_every_objective(rank, world_size, logs, mode):
    # Three steps: a parameter left without a gradient in step 1 makes DDP fail in step 2.
    config = _objectives_config(logs, mode, OBJECTIVE_MODES[mode][0], steps=3, batch_size=4)
    config.loss.local_loss = config.loss.gather_with_grad = True
    train(config)


@pytest.mark.parametrize("mode", ["replacing", pytest.param("added", marks=pytest.mark.slow)])
def test_every_objective_trains_under_ddp_and_is_logged_under_its_own_name(tmp_path, mode):
    run_on_workers(_train_with_every_objective, 2, str(tmp_path), mode, timeout_s=300)
    records = _logged_terms(tmp_path / mode)
    assert [r["step"] for r in records] == [1, 2, 3]
    for record in records:
        logged = sorted(key[len("loss/"):] for key in record if key.startswith("loss/"))
        assert logged == sorted(OBJECTIVE_MODES[mode][1])
        assert all(math.isfinite(record[f"loss/{term}"]) for term in OBJECTIVE_MODES[mode][1])
        assert record.get("global_batch_size", 8) == 8  # 2 ranks x 4 (not logged when DCL replaces the loss)


def test_resumed_run_with_objectives_replays_their_augmentations(tmp_path):
    from safetensors.torch import load_file

    # MLM masks, SimCLR crops and multiview token drops all come from the objectives' generator.
    sections = {"mlm": {"enabled": True}, "simclr": {"enabled": True, **SMALL_HEADS["simclr"]},
                "multiview": {"enabled": True}}

    def config_for(name, resume=None):
        config = _objectives_config(tmp_path, name, sections, steps=4)
        config.loop.deterministic = True
        config.checkpoint.save_every_steps = 2
        config.checkpoint.keep_checkpoints = 3
        config.checkpoint.resume = resume
        return config

    uninterrupted = train(config_for("uninterrupted")).run_dir
    middle = uninterrupted / "checkpoints" / "step_0000002"
    resumed = train(config_for("resumed", resume=str(middle))).run_dir

    def final(run_dir):
        latest = CheckpointManager(run_dir / "checkpoints", keep=3).latest()
        assert latest.name == "step_0000004"
        objectives = torch.load(latest / "train_state.pt", weights_only=False)["extra_modules"]["objectives"]
        return load_file(latest / "model.safetensors"), objectives

    (model_a, heads_a), (model_b, heads_b) = final(uninterrupted), final(resumed)
    assert heads_a["_extra_state"] == heads_b["_extra_state"] == {"calls": 4}
    for name in model_a:
        assert torch.equal(model_a[name], model_b[name]), name
    for name in heads_a:
        if name != "_extra_state":
            assert torch.equal(heads_a[name], heads_b[name]), name
    losses_a = {r["step"]: r for r in _logged_terms(uninterrupted)}
    losses_b = {r["step"]: r for r in _logged_terms(resumed)}
    assert sorted(losses_b) == [3, 4]
    for step in (3, 4):
        for key in ("loss", "loss/mlm_loss", "loss/simclr_loss", "loss/multiview_loss"):
            assert losses_a[step][key] == losses_b[step][key], (step, key)
