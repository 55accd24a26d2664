"""Names a package facade loads on first access (PEP 562), so that importing it stays light.

The facades of the top-level package, ``policies`` and ``ratelimit`` export names whose
modules import SQLAlchemy or a Redis client; those are listed here instead of imported, so
that code using only the policy engine never loads a database library.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    lazy: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Return a facade's module ``__getattr__`` and ``__dir__`` for its ``lazy`` names.

    Args:
        lazy: Each lazily exported name and the module that defines it.
        namespace: The facade's ``globals()`` (its ``__name__`` and ``__all__`` included); a
            name, once loaded, is stored there so later lookups skip ``__getattr__``.
    """

    def __getattr__(name: str) -> Any:
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *namespace["__all__"]})

    return __getattr__, __dir__
