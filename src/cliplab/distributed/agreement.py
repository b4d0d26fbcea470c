"""Ranks agreeing on an outcome: when one rank fails, every rank raises the real cause at once.

A rank that raises alone leaves the others waiting in their next collective until the process-group
timeout (30 minutes by default), after which they report the timeout, not the cause. Every place
where ranks can part ways therefore goes through one of these collectives, called by every rank:

    raise_if_any_rank_failed(error)   each rank passes what its own part raised (None: it succeeded);
                                      when any rank failed, every rank raises
    run_on_main(fn)                   fn() on rank 0 only; every rank returns its result or raises
                                      its error
    any_rank(flag)                    True on every rank when any rank's flag is True
    max_over_ranks(value)             the largest of every rank's integer, on every rank

What every rank raises: a rank that failed raises its own error (its traceback intact); the others
raise the error of the lowest failing rank, rebuilt from its pickle (sent by a rank of this job,
never read from a file), so the same type and message,
with a note naming the rank it came from. An error that does not survive pickling (a constructor
that does not take its own `args`) arrives as a `UserError` when it was one, else as a
`RuntimeError`, carrying its type name and message.

Also here, so that nothing outside this package calls torch's object collectives:
`gather_objects` (all_gather_object) and `broadcast_object` (broadcast_object_list). With one
process (or none initialised) every function runs locally and no collective happens.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist

from cliplab.distributed.collectives import is_distributed, world_info
from cliplab.errors import UserError

T = TypeVar("T")


def collective_device() -> torch.device:
    """Where the tensors of a collective must live: the current GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_over_ranks(values: list[int]) -> list[int]:
    """Elementwise sum of every rank's integer list (same length everywhere)."""
    if not is_distributed():
        return [int(value) for value in values]
    summed = torch.tensor(values, dtype=torch.int64, device=collective_device())
    dist.all_reduce(summed)
    return [int(value) for value in summed.tolist()]


def max_over_ranks(value: int) -> int:
    """The largest of every rank's integer (one all_reduce)."""
    if not is_distributed():
        return int(value)
    largest = torch.tensor([int(value)], dtype=torch.int64, device=collective_device())
    dist.all_reduce(largest, op=dist.ReduceOp.MAX)
    return int(largest.item())


def any_rank(flag: bool) -> bool:
    """True on every rank when `flag` is True on at least one rank (one all_reduce of an int)."""
    return bool(max_over_ranks(int(bool(flag))))


def gather_objects(value: Any) -> list[Any]:
    """Every rank's picklable `value`, in rank order."""
    if not is_distributed():
        return [value]
    gathered: list[Any] = [None] * world_info()[1]
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: Any, source: int = 0) -> Any:
    """Rank `source`'s picklable `value`, on every rank (the others' `value` is ignored)."""
    if not is_distributed():
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=source)
    return holder[0]


@dataclass(frozen=True)
class PortableError:
    """An exception as it travels to the other ranks: its pickle when it round-trips, and its text."""

    pickled: bytes | None
    kind: str
    message: str
    is_user_error: bool

    @classmethod
    def of(cls, error: Exception) -> "PortableError":
        try:
            pickled = pickle.dumps(error)
            pickle.loads(pickled)  # fails here, on the sender, for a constructor that does not take its args
        except Exception:  # noqa: BLE001 - any failure means: send the text instead
            pickled = None
        return cls(pickled, type(error).__qualname__, str(error), isinstance(error, UserError))

    def rebuild(self, source_rank: int) -> Exception:
        """The error to raise on a rank that did not fail itself."""
        error = None
        if self.pickled is not None:
            try:
                error = pickle.loads(self.pickled)
            except Exception:  # noqa: BLE001 - e.g. a class this process cannot import
                error = None
        if error is None:
            error = UserError(self.message) if self.is_user_error else RuntimeError(f"{self.kind}: {self.message}")
        error.add_note(f"(raised on rank {source_rank}; this rank stopped with it)")
        return error


def _lowest_failing_rank(failed: bool) -> int | None:
    rank, world_size = world_info()
    value = torch.tensor([rank if failed else world_size], dtype=torch.int64, device=collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    lowest = int(value.item())
    return None if lowest == world_size else lowest


def raise_if_any_rank_failed(error: Exception | None) -> None:
    """Return when no rank failed; otherwise raise on every rank (see the module docstring).

    A collective: every rank calls it with its own outcome. Costs one all_reduce of an int, plus
    one broadcast of the error when some rank failed.
    """
    if not is_distributed():
        if error is not None:
            raise error
        return
    source = _lowest_failing_rank(error is not None)
    if source is None:
        return
    portable = broadcast_object(PortableError.of(error) if world_info()[0] == source else None, source)
    if error is not None:
        raise error
    raise portable.rebuild(source)


def run_on_main(fn: Callable[[], T]) -> T:
    """fn() on rank 0 only; its (picklable) result on every rank, or its error raised on every rank.

    A collective: every rank calls it, with the same `fn`. One broadcast of the outcome.
    """
    if not is_distributed():
        return fn()
    error, outcome = None, None
    if world_info()[0] == 0:
        try:
            outcome = (None, fn())
        except Exception as caught:  # noqa: BLE001 - raised below on every rank
            error, outcome = caught, (PortableError.of(caught), None)
    portable, result = broadcast_object(outcome)
    if error is not None:
        raise error
    if portable is not None:
        raise portable.rebuild(0)
    return result
