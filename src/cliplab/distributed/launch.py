"""Run a function on N real local processes joined by a gloo process group.

Used by the multi-process tests and benchmarks. The parent process owns the rendezvous store on a
port the operating system picks, so concurrent runs never race for a port.
"""

from __future__ import annotations

import datetime
import os
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cliplab.distributed.teardown import leave_process_group

LOCALHOST = "127.0.0.1"


def _worker(
    rank: int,
    world_size: int,
    store_port: int,
    result_dir: str,
    fn: Callable[..., Any],
    args: tuple,
    threads_per_worker: int,
) -> None:
    result_path = Path(result_dir) / f"rank{rank}.pt"
    torch.set_num_threads(threads_per_worker)
    store = dist.TCPStore(LOCALHOST, store_port, world_size + 1, is_master=False,
                          timeout=datetime.timedelta(seconds=120))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=120))
    try:
        result = fn(rank, world_size, *args)
        torch.save({"ok": True, "value": result}, result_path)
    except BaseException:  # the parent re-raises it with the rank attached
        torch.save({"ok": False, "error": traceback.format_exc()}, result_path)
        os._exit(1)  # peers blocked in a collective would otherwise keep this process alive
    leave_process_group()


class WorkerError(RuntimeError):
    """A worker process raised, crashed or timed out."""


def run_on_workers(
    fn: Callable[..., Any],
    world_size: int,
    *args: Any,
    timeout_s: float = 300.0,
    threads_per_worker: int = 1,
) -> list[Any]:
    """Call `fn(rank, world_size, *args)` in `world_size` fresh processes in one gloo group.

    `fn` must be importable by name (a module-level function); its return value must be picklable
    by torch.save. Returns the values ordered by rank. Raises WorkerError with the worker's
    traceback if any rank fails, or if the group does not finish within `timeout_s`.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    store = dist.TCPStore(LOCALHOST, 0, world_size + 1, is_master=True,
                          timeout=datetime.timedelta(seconds=120), wait_for_workers=False)
    context = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="cliplab-workers-") as result_dir:
        processes = [
            context.Process(
                target=_worker,
                args=(rank, world_size, store.port, result_dir, fn, args, threads_per_worker),
                daemon=False,
            )
            for rank in range(world_size)
        ]
        for process in processes:
            process.start()
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout_s)
        for process in processes:
            remaining = (deadline - datetime.datetime.now()).total_seconds()
            process.join(max(remaining, 0.0))
        hung = [rank for rank, process in enumerate(processes) if process.is_alive()]
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
        results = []
        errors = []
        for rank in range(world_size):
            path = Path(result_dir) / f"rank{rank}.pt"
            if not path.exists():
                errors.append(f"rank {rank}: no result (exit code {processes[rank].exitcode})")
                continue
            # The file of a worker this call started, in the temporary directory it created: its
            # value may be any picklable object, and nothing else writes there.
            payload = torch.load(path, weights_only=False)
            if payload["ok"]:
                results.append(payload["value"])
            else:
                errors.append(f"rank {rank} raised:\n{payload['error']}")
        if hung:
            errors.insert(0, f"ranks {hung} did not finish within {timeout_s:.0f} s")
        if errors:
            raise WorkerError("\n".join(errors))
        return results
