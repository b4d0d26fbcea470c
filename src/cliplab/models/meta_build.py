"""Whether a build on the meta device stands for real values: by default a meta build is the
architecture only (counting, a model to be filled from a checkpoint), and nothing is initialised;
inside `initialisers_on_meta()` its values are recorded elsewhere (`cliplab.distributed.shard_init`
shadows every meta tensor for FSDP2), so the initialisers run and a tower must not skip what gives
its values."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_values_recorded = False


@contextlib.contextmanager
def initialisers_on_meta() -> Iterator[None]:
    """Run the initialisers on the meta device too, for a caller that shadows the meta tensors
    with real values (`cliplab.distributed.shard_init`)."""
    global _values_recorded
    previous, _values_recorded = _values_recorded, True
    try:
        yield
    finally:
        _values_recorded = previous


def meta_values_recorded() -> bool:
    """True inside `initialisers_on_meta()`."""
    return _values_recorded
