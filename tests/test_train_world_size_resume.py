"""World-size independent global batches: a run checkpointed at N ranks resumes at another N.

With the same global batch, a step reads the same samples on 1, 2 or 4 ranks and the checkpoint's
data position means the same on all of them, so a DDP run of N = 2 checkpointed at step 10 and
resumed on N = 1 and N = 4 continues as the uninterrupted N = 2 run did, within 1e-4 relative over
30 further steps (the order of the gradient sums differs with N, nothing else does). An FSDP2 run
at N = 4 resumes from that single-file checkpoint too (FSDP2's own, sharded checkpoints are in
tests/test_train_checkpointing_dcp.py).
"""

import json
import math

import pytest

from cliplab.distributed.launch import run_on_workers
from cliplab.errors import UserError
from cliplab.train import train

from train_helpers import small_config

GLOBAL_BATCH, CHECKPOINT_STEP, STEPS = 8, 10, 40


def _config(logs, name, world_size, *, batch_size=None, resume=None, fsdp=False, steps=STEPS):
    config = small_config(logs, name=name, steps=steps, batch_size=batch_size or GLOBAL_BATCH // world_size)
    config.data.train_num_samples = GLOBAL_BATCH * STEPS
    config.loss.gather_with_grad = True  # every rank computes (and logs) the loss of the whole global batch
    config.checkpoint.save_every_steps = CHECKPOINT_STEP
    config.checkpoint.keep_checkpoints = STEPS // CHECKPOINT_STEP
    config.checkpoint.resume = resume
    config.distributed.fsdp = fsdp
    return config


def _train(rank, world_size, config):
    train(config)


def _losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [record["loss"] for record in records if record["kind"] == "train"]


@pytest.mark.slow
def test_a_two_rank_checkpoint_resumes_on_one_and_four_ranks(tmp_path):
    run_on_workers(_train, 2, _config(tmp_path, "two", 2), timeout_s=600)
    reference = _losses(tmp_path / "two")[CHECKPOINT_STEP:]
    checkpoint = str(tmp_path / "two" / "checkpoints" / f"step_{CHECKPOINT_STEP:07d}")
    for name, world_size, fsdp in (("one", 1, False), ("four", 4, False), ("four_fsdp", 4, True)):
        run_on_workers(_train, world_size, _config(tmp_path, name, world_size, resume=checkpoint, fsdp=fsdp),
                       timeout_s=600)
        resumed = _losses(tmp_path / name)
        assert len(resumed) == len(reference) == STEPS - CHECKPOINT_STEP
        for step, (loss, expected) in enumerate(zip(resumed, reference), start=CHECKPOINT_STEP + 1):
            assert math.isclose(loss, expected, rel_tol=1e-4), (name, step, loss, expected)


def test_resuming_with_another_global_batch_names_the_batch_size_that_fits(tmp_path):
    train(_config(tmp_path, "eight", 1, batch_size=8, steps=2))
    checkpoint = str(tmp_path / "eight" / "checkpoints" / f"step_{2:07d}")
    with pytest.raises(UserError, match="8 samples per step and this run takes 4 .*resume it with --batch-size 8"):
        train(_config(tmp_path, "four", 1, batch_size=4, resume=checkpoint, steps=2))
