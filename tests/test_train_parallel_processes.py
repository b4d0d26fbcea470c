"""`distributed_setup`: under torchrun's shared agent store, each restart attempt gets its own keys."""

import datetime

import pytest
import torch.distributed as dist

from cliplab.train.parallel.processes import _restart_attempt_store

TIMEOUT = datetime.timedelta(seconds=10)


def _torchrun_env(monkeypatch, port, attempt, local_world_size="2", world_size="2"):
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    monkeypatch.setenv("TORCHELASTIC_RESTART_COUNT", str(attempt))
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(port))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", local_world_size)
    monkeypatch.setenv("WORLD_SIZE", world_size)


@pytest.fixture
def agent_store():
    """Stands in for the torchrun agent's TCPStore server, which outlives every attempt."""
    return dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False, timeout=TIMEOUT)


def test_a_restarted_attempt_does_not_see_the_dead_attempts_keys(monkeypatch, agent_store):
    _torchrun_env(monkeypatch, agent_store.port, attempt=0)
    _restart_attempt_store(TIMEOUT).set("0/rank_1", "address of a worker that was killed")
    _torchrun_env(monkeypatch, agent_store.port, attempt=1)
    restarted = _restart_attempt_store(TIMEOUT)
    assert not restarted.check(["0/rank_1"])
    restarted.set("0/rank_1", "live address")
    assert restarted.get("0/rank_1") == b"live address"


@pytest.mark.parametrize("env", [{}, {"TORCHELASTIC_USE_AGENT_STORE": "False"},
                                 {"LOCAL_WORLD_SIZE": "2", "WORLD_SIZE": "4"}])
def test_left_to_torch_outside_a_single_node_shared_store(monkeypatch, agent_store, env):
    """Not under torchrun, torchrun without the shared store, or several nodes (whose agents'
    restart counts can differ): init_process_group's own store is used."""
    if env:
        _torchrun_env(monkeypatch, agent_store.port, attempt=1)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
    else:
        for key in ("TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT"):
            monkeypatch.delenv(key, raising=False)
    assert _restart_attempt_store(TIMEOUT) is None
