"""Ranks agreeing on an outcome: every rank raises the real cause, not a timeout or a secondary error."""


import pytest

from cliplab.distributed.agreement import (any_rank, broadcast_object, gather_objects, max_over_ranks,
                                           raise_if_any_rank_failed, run_on_main)
from cliplab.distributed.launch import run_on_workers
from cliplab.errors import UserError
from cliplab.train.config import ConfigError


class NeedsTwoArguments(Exception):
    """Pickles, but does not unpickle: its constructor does not take its own args."""

    def __init__(self, first, second):
        super().__init__(f"{first} and {second}")


class UserNeedsTwoArguments(UserError):
    def __init__(self, first, second):
        super().__init__(f"{first} and {second}")


def _outcome(call):
    try:
        return ("returned", call())
    except Exception as error:  # noqa: BLE001 - what each rank raised is the result
        return (type(error).__name__, str(error), getattr(error, "__notes__", []))


def test_one_process_runs_everything_locally():
    error = ValueError("bad")
    with pytest.raises(ValueError) as raised:
        raise_if_any_rank_failed(error)
    assert raised.value is error
    raise_if_any_rank_failed(None)
    assert run_on_main(lambda: 7) == 7
    assert any_rank(True) and not any_rank(False) and max_over_ranks(-3) == -3
    assert gather_objects("x") == ["x"] and broadcast_object("y") == "y"


def _agree_on_ranks(rank, world_size):
    def fail_on(ranks, make):
        return lambda: raise_if_any_rank_failed(make(rank) if rank in ranks else None)

    def config_error():
        raise ConfigError("logging.name", "old", "names an existing run")

    return [
        _outcome(fail_on((), None)),
        _outcome(fail_on((1,), lambda r: ValueError("rank 1's value is bad"))),
        _outcome(fail_on((0, 1), lambda r: KeyError(f"own error of rank {r}"))),
        _outcome(fail_on((1,), lambda r: NeedsTwoArguments("first", "second"))),
        _outcome(fail_on((1,), lambda r: UserNeedsTwoArguments("file", "line 3"))),
        _outcome(lambda: run_on_main(lambda: {"rank": rank})),
        _outcome(lambda: run_on_main(config_error)),
        _outcome(lambda: (any_rank(rank == 1), any_rank(False))),
        _outcome(lambda: (gather_objects(rank), broadcast_object(f"from {rank}", source=1))),
        _outcome(lambda: max_over_ranks([7, 2][rank])),
    ]


def test_every_rank_raises_the_real_cause():
    rank0, rank1 = run_on_workers(_agree_on_ranks, 2, timeout_s=600)
    assert rank0[0] == rank1[0] == ("returned", None)
    note = "(raised on rank 1; this rank stopped with it)"
    assert rank1[1] == ("ValueError", "rank 1's value is bad", [])
    assert rank0[1] == ("ValueError", "rank 1's value is bad", [note])  # same type and message
    assert rank0[2] == ("KeyError", "'own error of rank 0'", []) and rank1[2] == ("KeyError", "'own error of rank 1'", [])
    assert rank0[3] == ("RuntimeError", "NeedsTwoArguments: first and second", [note])  # the text survives
    assert rank0[4] == ("UserError", "file and line 3", [note])  # still a user error
    assert rank0[5] == rank1[5] == ("returned", {"rank": 0})
    expected = "config key 'logging.name' names an existing run, got 'old'"
    assert rank0[6] == ("ConfigError", expected, []) and rank1[6] == ("ConfigError", expected,
                                                                      ["(raised on rank 0; this rank stopped with it)"])
    assert rank0[7] == rank1[7] == ("returned", (True, False))
    assert rank0[8] == rank1[8] == ("returned", ([0, 1], "from 1"))
    assert rank0[9] == rank1[9] == ("returned", 7)
