"""The request-scoped correlation id that ties logs, errors and spans together."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token

_correlation_id: ContextVar[str | None] = ContextVar("dotmac_correlation_id", default=None)


def new_correlation_id() -> str:
    """Return a fresh random correlation id."""
    return uuid.uuid4().hex


def get_correlation_id() -> str:
    """Return the current correlation id, or a fresh one when no request set it."""
    current = _correlation_id.get()
    return current if current is not None else new_correlation_id()


def set_correlation_id(correlation_id: str | None) -> Token[str | None]:
    """Set the correlation id for the current context; returns a token to reset it."""
    return _correlation_id.set(correlation_id)


@contextmanager
def correlation_scope(correlation_id: str | None = None) -> Iterator[str]:
    """Run a block under one correlation id (a new one unless given).

    Example:
        >>> with correlation_scope("req-1") as cid:
        ...     assert get_correlation_id() == cid == "req-1"
    """
    cid = correlation_id or _correlation_id.get() or new_correlation_id()
    token = _correlation_id.set(cid)
    try:
        yield cid
    finally:
        _correlation_id.reset(token)
