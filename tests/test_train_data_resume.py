"""Data resume through `train()` (RELIABILITY item 3): a run interrupted mid-epoch and resumed from its
checkpoint trains on exactly the sample ids of an uninterrupted run, step by step, on 1 process and
on 2 gloo ranks: 0 duplicated, 0 missing in every epoch.

`tests/test_data_loader.py` checks the same at the loader level; this checks that the loop saves and
restores the data position (epoch, batch in epoch) that the loader resumes from.
"""

from collections import Counter
from dataclasses import replace

from cliplab.distributed.launch import run_on_workers
from cliplab.train import TrainHooks, train

from data_fixtures import make_manifest
from train_helpers import csv_config

SAMPLES, BATCH_PER_RANK, EPOCHS = 40, 4, 2  # on 2 ranks 5 steps of 2 x 4 samples per epoch
CHECKPOINT_EVERY, CRASH_AT = 3, 8  # resume from step 6: mid-epoch (epoch 1 on 2 ranks, 0 on 1)


class Crash(Exception):
    """Stands in for a kill: raised by a hook on every rank after the same step."""


def _config(logs, manifest, name, resume=False):
    config = csv_config(logs, manifest, name=name, batch_size=BATCH_PER_RANK, epochs=EPOCHS)
    config.checkpoint.save_every_steps = CHECKPOINT_EVERY
    config.checkpoint.resume = "latest" if resume else None
    return config


def _sample_ids_per_step(rank, world_size, logs, manifest):
    """{step index: this rank's sample ids} of an uninterrupted run, and of a crashed + resumed one."""
    def recorder(into):
        return lambda step, batches: into.update({step: [i for b in batches for i in b["sample_ids"].tolist()]})

    def crash(step, model):
        if step == CRASH_AT:
            raise Crash

    uninterrupted, before_crash, after_resume = {}, {}, {}
    train(_config(logs, manifest, "uninterrupted"), hooks=TrainHooks(after_batches=recorder(uninterrupted)))
    try:
        train(_config(logs, manifest, "resumed"), hooks=TrainHooks(after_batches=recorder(before_crash),
                                                                   after_step=crash))
    except Crash:
        pass
    train(_config(logs, manifest, "resumed", resume=True), hooks=TrainHooks(after_batches=recorder(after_resume)))
    return uninterrupted, before_crash, after_resume


def _check_same_ids(results):
    """results: per rank, what `_sample_ids_per_step` returned."""
    world_size = len(results)
    steps_per_epoch = SAMPLES // (world_size * BATCH_PER_RANK)
    resumed_from = CRASH_AT // CHECKPOINT_EVERY * CHECKPOINT_EVERY
    trained_per_rank = []
    for uninterrupted, before_crash, after_resume in results:
        assert sorted(uninterrupted) == list(range(EPOCHS * steps_per_epoch))
        assert sorted(before_crash) == list(range(CRASH_AT))
        assert sorted(after_resume) == list(range(resumed_from, EPOCHS * steps_per_epoch))
        # steps after the checkpoint were lost with the crash; the resumed run redoes them
        trained = {step: ids for step, ids in before_crash.items() if step < resumed_from} | after_resume
        assert trained == uninterrupted
        trained_per_rank.append(trained)
    for epoch in range(EPOCHS):
        steps = range(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch)
        seen = Counter(i for trained in trained_per_rank for step in steps for i in trained[step])
        duplicated = sum(times - 1 for times in seen.values())
        missing = SAMPLES - len(seen)
        assert (duplicated, missing) == (0, 0), epoch


def test_interrupted_and_resumed_run_sees_the_same_sample_ids(tmp_path):
    manifest = make_manifest(tmp_path / "data", SAMPLES)
    _check_same_ids([_sample_ids_per_step(0, 1, str(tmp_path), str(manifest))])  # resumes in epoch 0


def test_interrupted_and_resumed_run_sees_the_same_sample_ids_on_two_ranks(tmp_path):
    manifest = make_manifest(tmp_path / "data", SAMPLES)
    _check_same_ids(run_on_workers(_sample_ids_per_step, 2, str(tmp_path), str(manifest), timeout_s=240))


def _list_manifest(directory, count, word):
    """make_manifest's images, each with the captions ["{word} i", "{word} i again"]."""
    make_manifest(directory, count)
    rows = ["filepath\ttitle"] + [f'images/{index}.png\t["{word} {index}", "{word} {index} again"]'
                                  for index in range(count)]
    (directory / "lists.tsv").write_text("\n".join(rows) + "\n")
    return str(directory / "lists.tsv")


def test_a_mixture_with_several_captions_resumes_with_the_same_samples_and_captions(tmp_path):
    sources = f"{_list_manifest(tmp_path / 'a', 8, 'a')}::{_list_manifest(tmp_path / 'b', 4, 'b')}"

    def config(name, resume=False):
        run = csv_config(str(tmp_path), sources, name=name, batch_size=4, epochs=2)
        run.data = replace(run.data, train_data_upsampling_factors="1::2")  # a pass: 8 + 2 x 4 = 16 samples, 4 steps
        run.checkpoint.save_every_steps = 3
        run.checkpoint.resume = "latest" if resume else None
        return run

    def recorder(into):
        def record(step, batches):
            into[step] = [pair for b in batches for pair in zip(b["sample_ids"].tolist(), b["captions"])]
        return record

    def crash(step, model):
        if step == 5:
            raise Crash

    uninterrupted, before, after = {}, {}, {}
    train(config("whole"), hooks=TrainHooks(after_batches=recorder(uninterrupted)))
    try:
        train(config("resumed"), hooks=TrainHooks(after_batches=recorder(before), after_step=crash))
    except Crash:
        pass
    train(config("resumed", resume=True), hooks=TrainHooks(after_batches=recorder(after)))
    assert sorted(after) == [3, 4, 5, 6, 7]
    assert {step: read for step, read in before.items() if step < 3} | after == uninterrupted
    first_epoch = [pair for step in range(4) for pair in uninterrupted[step]]
    assert Counter(caption.split()[0] for _, caption in first_epoch) == {"a": 8, "b": 8}
    assert Counter(index for index, _ in first_epoch if index >= 8) == {8: 2, 9: 2, 10: 2, 11: 2}
    # each epoch draws one of a sample's two captions, keyed by (seed, epoch, sample): both appear
    assert {caption.endswith("again") for step in uninterrupted for _, caption in uninterrupted[step]} == {True, False}
