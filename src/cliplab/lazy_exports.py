"""Packages whose public names are imported on first use (PEP 562), so that importing a package
(and the CLI's `--help`, which reads the config tables) does not pay for importing torch.

    _EXPORTS = {"cliplab.data.config": ("DataConfig",), ...}   # defining module -> its public names
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def exported_names(exports: dict[str, tuple[str, ...]]) -> list[str]:
    """The public names of `exports` (module -> names), sorted: a package's `__all__`."""
    return sorted(name for names in exports.values() for name in names)


def lazy_exports(package: str, exports: dict[str, tuple[str, ...]]) -> tuple[Callable[[str], Any],
                                                                             Callable[[], list[str]]]:
    """The `__getattr__` and `__dir__` of `package`, resolving each name of `exports` (defining
    module -> its public names) by importing its module the first time it is asked for (then kept
    in the package's namespace)."""
    module_of = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in module_of:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module_of[name]), name)
        setattr(sys.modules[package], name, value)  # later look-ups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *module_of})

    return __getattr__, __dir__
