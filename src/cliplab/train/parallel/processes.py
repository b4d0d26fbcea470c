"""Process group setup for training: torchrun environment -> device, backend, teardown.

Under torchrun (WORLD_SIZE > 1 in the environment) the group is created here: NCCL when CUDA is
available, gloo otherwise, one GPU per local rank. When the caller already initialised a group
(tests via `cliplab.distributed.launch.run_on_workers`) it is used as is and left for the caller
to destroy. Teardown is `leave_process_group` (why it barriers and waits: its docstring).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cliplab.distributed.teardown import leave_process_group
from cliplab.train.config import DistributedConfig


@dataclass
class DistributedContext:
    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    owns_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _restart_attempt_store(timeout: datetime.timedelta) -> dist.Store | None:
    """The torchrun agent's store, with keys private to this restart attempt, on a single node.

    torchrun (torch 2.13, static and c10d rendezvous) hands every restart the same agent-hosted
    TCPStore, and init_process_group no longer prefixes keys per attempt (pytorch#135712): after a
    worker dies, the restarted ones can read the peer addresses gloo stored in the dead attempt and
    fail with "connectFullMesh failed ... Connection refused". On one node all workers share the
    agent's TORCHELASTIC_RESTART_COUNT, so it names the attempt; across nodes the agents' counts
    can differ, so that case (and anything not under torchrun's shared store) is left to torch.
    """
    env = os.environ
    if (env.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or "TORCHELASTIC_RESTART_COUNT" not in env
            or env.get("LOCAL_WORLD_SIZE") != env.get("WORLD_SIZE")):
        return None
    store = dist.TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), is_master=False, timeout=timeout)
    return dist.PrefixStore(f"cliplab/attempt_{env['TORCHELASTIC_RESTART_COUNT']}", store)


def init_distributed(config: DistributedConfig) -> DistributedContext:
    """Join (or create, under torchrun) the process group and pick this process's device."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns_group = False
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = config.backend or ("nccl" if torch.cuda.is_available() else "gloo")
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        timeout = datetime.timedelta(seconds=config.timeout_s)
        store = _restart_attempt_store(timeout)
        if store is None:
            dist.init_process_group(backend, timeout=timeout)
        else:
            dist.init_process_group(backend, store=store, rank=int(os.environ["RANK"]),
                                    world_size=int(os.environ["WORLD_SIZE"]), timeout=timeout)
        owns_group = True
    elif not dist.is_initialized() and config.fsdp:  # FSDP2 needs a process group, even of one
        backend = config.backend or ("nccl" if torch.cuda.is_available() else "gloo")
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        owns_group = True
    if dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    else:
        rank, world_size = 0, 1
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    return DistributedContext(rank=rank, local_rank=local_rank, world_size=world_size, device=device,
                              owns_group=owns_group)


def shutdown(context: DistributedContext) -> None:
    """Leave the group (`cliplab.distributed.teardown`) if this module created it."""
    if context.owns_group and dist.is_initialized():
        leave_process_group()
