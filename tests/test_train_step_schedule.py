import pytest

from cliplab.train.config import OptimConfig
from cliplab.train.step.schedule import learning_rate, warmup_warning


def test_no_warning_when_the_warmup_ends_before_the_run():
    assert warmup_warning(OptimConfig(warmup=69), 70) is None


def test_a_warmup_longer_than_the_run_is_named_with_its_numbers():
    config = OptimConfig(warmup=100, lr=2e-3)
    assert learning_rate(69, 70, config) == pytest.approx(1.4e-3)
    assert warmup_warning(config, 70) == (
        "warning: warmup is 100 steps (--warmup) but the run has 70: the learning rate rises to 0.0014 at the last "
        "step and never reaches its peak 0.002 (--lr); lower --warmup (e.g. 7, a tenth of the run) or train longer")


def test_a_warmup_as_long_as_the_run_never_decays():
    assert "reaches its peak 0.002 only at the last step and never decays" in warmup_warning(OptimConfig(warmup=70), 70)


@pytest.mark.parametrize("warmup, total_steps, shown", [
    (1, 1, "warmup is 1 step (--warmup) but the run has 1"),  # before: "1 steps ... (e.g. 1, a tenth of the run)"
    (100, 2, "warmup is 100 steps (--warmup) but the run has 2")])
def test_a_run_of_fewer_than_ten_steps_is_told_to_drop_the_warmup(warmup, total_steps, shown):
    warning = warmup_warning(OptimConfig(warmup=warmup), total_steps)
    assert warning.startswith(f"warning: {shown}: ")
    assert warning.endswith("lower --warmup (e.g. 0, no warmup) or train longer")
