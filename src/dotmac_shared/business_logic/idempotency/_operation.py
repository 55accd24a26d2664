"""Idempotent operations: subclasses register themselves by ``operation_type``."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from dotmac_shared.business_logic.exceptions import InvalidInputError

__all__ = ["FunctionOperation", "IdempotentOperation", "registered_operation", "registered_types"]

_OPERATION_TYPE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}\Z")
_REGISTRY: dict[str, type[IdempotentOperation]] = {}


class IdempotentOperation:
    """Base of operations the :class:`IdempotencyManager` runs at most once per key.

    Defining a subclass with an ``operation_type`` registers it, so a manager given only a key
    (which carries its operation type) finds and instantiates it. The class attributes tune
    the manager's behaviour for this operation.

    Example:
        >>> class Refund(IdempotentOperation):
        ...     operation_type = "doc_refund"
        ...     async def execute(self, operation_data, context):
        ...         return {"refunded": operation_data["amount"]}
    """

    #: Unique name; the manager finds the operation by it.
    operation_type: ClassVar[str]
    #: How long a stored result is replayed; after that the key counts as absent.
    ttl: dt.timedelta = dt.timedelta(hours=24)
    #: How long a claim is held without renewal before another caller may take it over.
    lease_seconds: float = 30.0
    #: Tries of the body per call (1 = no retry); only ``retry_on`` errors are retried.
    max_attempts: int = 3
    #: Exception types worth retrying with exponential backoff and jitter.
    retry_on: tuple[type[BaseException], ...] = ()
    #: First and largest backoff between retries, seconds.
    retry_initial_delay: float = 0.05
    retry_max_delay: float = 2.0
    #: Store a final failure and replay it (``True``), or release the key so the next call
    #: runs the operation again (``False``).
    cache_failures: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        operation_type = cls.__dict__.get("operation_type")
        if operation_type is None:
            return  # an intermediate base class
        if not isinstance(operation_type, str) or not _OPERATION_TYPE.match(operation_type):
            raise InvalidInputError(
                f"{cls.__qualname__}.operation_type must be 1-100 characters of letters, "
                f"digits and _.:- (got {operation_type!r})",
                field="operation_type",
            )
        existing = _REGISTRY.get(operation_type)
        if existing is not None and _qualified(existing) != _qualified(cls):
            raise InvalidInputError(
                f"operation_type {operation_type!r} is already registered by "
                f"{_qualified(existing)}; {_qualified(cls)} needs another name",
                field="operation_type",
            )
        _REGISTRY[operation_type] = cls

    async def execute(
        self, operation_data: Mapping[str, Any], context: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """Do the work once and return a JSON-encodable mapping (see the codec)."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement execute()")


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def registered_types() -> list[str]:
    """Every registered ``operation_type``, sorted."""
    return sorted(_REGISTRY)


def registered_operation(operation_type: str) -> type[IdempotentOperation]:
    """Return the class registered for ``operation_type``."""
    try:
        return _REGISTRY[operation_type]
    except KeyError:
        raise InvalidInputError(
            f"no idempotent operation is registered for {operation_type!r}; "
            f"known: {', '.join(registered_types()) or 'none'}",
            field="operation_type",
        ) from None


class FunctionOperation(IdempotentOperation):
    """An operation wrapping a plain async function (what ``@idempotent`` builds)."""

    def __init__(
        self,
        function: Callable[..., Awaitable[Any]],
        operation_type: str,
        **settings: Any,
    ) -> None:
        """Wrap ``function``; ``settings`` override the class attributes (``ttl``, ...)."""
        if not _OPERATION_TYPE.match(operation_type):
            raise InvalidInputError(
                f"operation_type must be 1-100 characters of letters, digits and _.:- "
                f"(got {operation_type!r})",
                field="operation_type",
            )
        unknown = set(settings) - _SETTINGS
        if unknown:
            raise InvalidInputError(
                f"unknown idempotency settings {sorted(unknown)}; known: {sorted(_SETTINGS)}",
                field="settings",
            )
        self.function = function
        self.operation_type = operation_type  # type: ignore[misc]
        for name, value in settings.items():
            setattr(self, name, value)

    async def execute(
        self, operation_data: Mapping[str, Any], context: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """Call the function with the payload as keyword arguments; wrap its return value."""
        return {"value": await self.function(**operation_data)}


_SETTINGS = {
    "ttl",
    "lease_seconds",
    "max_attempts",
    "retry_on",
    "retry_initial_delay",
    "retry_max_delay",
    "cache_failures",
}
