"""TrainState: the one owner of a run's counters."""

from cliplab.train.state import TrainState


def test_steps_and_epochs_advance_in_micro_batches():
    state = TrainState()
    over = []
    for _ in range(5):  # 2 micro-batches per step, 7 batches an epoch: 3 steps fit, the 7th batch is dropped
        state.finish_step(micro_batches=2, global_micro_batch=8)
        over.append(state.finish_epoch_if_over(micro_batches=2, batches_per_epoch=7))
    assert over == [False, False, True, False, False]
    assert (state.step, state.epoch, state.batch_in_epoch, state.samples_seen) == (5, 1, 4, 80)


def test_sample_and_nonfinite_counters():
    state = TrainState(skipped_samples=5, epoch_skipped_samples=1, epoch_samples_drawn=10)  # as restored
    state.record_step_samples(2, 10)
    assert (state.skipped_samples, state.epoch_skipped_samples, state.epoch_samples_drawn) == (7, 3, 20)
    state.start_epoch_sample_counts()
    assert (state.skipped_samples, state.epoch_skipped_samples, state.epoch_samples_drawn) == (7, 0, 0)
    for skipped in (True, True, False, True):
        state.record_nonfinite(skipped)
    assert (state.nonfinite_skips, state.consecutive_nonfinite) == (3, 1)


def test_dict_round_trip_and_older_dicts_start_missing_counters_at_zero():
    state = TrainState(step=3, epoch=1, nonfinite_skips=2, extra={"note": 1})
    assert TrainState.from_dict(state.to_dict()) == state
    assert TrainState.from_dict({"step": 3, "epoch": 1}) == TrainState(step=3, epoch=1)
