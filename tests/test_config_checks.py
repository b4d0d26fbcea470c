"""cliplab.config_checks: the one error every config check raises, its two ways of naming a key, how a
composer reports it, and that it crosses process boundaries whole."""

import pickle

import pytest

from cliplab.config_checks import (ConfigError, SectionError, check_choice, check_int_at_least, check_number,
                                   check_positive_int, require_together)
from cliplab.errors import UserError


def test_a_training_key_is_quoted_and_prefixed_by_its_section():
    with pytest.raises(ConfigError) as caught:
        check_positive_int("batch_size", 0)
    assert str(caught.value) == "config key 'batch_size' must be a positive integer, got 0"
    assert isinstance(caught.value, UserError) and isinstance(caught.value, ValueError)
    prefixed = caught.value.with_prefix("loop")
    assert (prefixed.key, prefixed.value) == ("loop.batch_size", 0)
    assert str(prefixed) == "config key 'loop.batch_size' must be a positive integer, got 0"


def test_an_architecture_key_reads_as_spelled_and_is_reported_whole_after_its_section():
    with pytest.raises(ConfigError) as caught:
        check_choice("vision.pool", "max", ("cls", "mean"), quoted=False)
    assert str(caught.value) == "vision.pool must be one of ('cls', 'mean'), got 'max'"
    reported = caught.value.with_prefix("data")
    assert isinstance(reported, SectionError)
    assert str(reported) == "config section 'data': vision.pool must be one of ('cls', 'mean'), got 'max'"


def test_a_check_relating_keys_says_it_whole():
    with pytest.raises(ConfigError) as caught:
        require_together(False, "text.heads", "text.width (10) must be divisible by text.heads (4)")
    assert str(caught.value) == "text.width (10) must be divisible by text.heads (4)"
    assert caught.value.key == "text.heads"


@pytest.mark.parametrize("check, args", [
    (check_number, ("weight", float("inf"))), (check_int_at_least, ("workers", -1, 0)),
    (require_together, (False, "train_data", "dataset_type 'csv' needs train_data and/or val_data")),
])
def test_errors_pickle_with_their_message_and_parts(check, args):
    with pytest.raises(ConfigError) as caught:
        check(*args)
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is type(caught.value) and str(copy) == str(caught.value)
    assert (copy.key, copy.value, copy.requirement) == (caught.value.key, caught.value.value, caught.value.requirement)
    section = SectionError("data", "workers must be >= 0")
    assert str(pickle.loads(pickle.dumps(section))) == str(section)
