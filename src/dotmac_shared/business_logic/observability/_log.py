"""Logging with tenant, correlation and saga context on every record.

Library code calls :func:`get_logger`; a :class:`ContextFilter` stamps each record with the
current ``tenant_id``, ``correlation_id`` and ``saga_id`` (from context variables), so a JSON
formatter or a log query can group everything one request or one saga did.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from dotmac_shared.business_logic.observability._context import _correlation_id

__all__ = ["ContextFilter", "JsonFormatter", "get_logger", "log_context"]

_tenant_id: ContextVar[str | None] = ContextVar("dotmac_tenant_id", default=None)
_saga_id: ContextVar[str | None] = ContextVar("dotmac_saga_id", default=None)

_CONTEXT_FIELDS = ("tenant_id", "correlation_id", "saga_id")


class ContextFilter(logging.Filter):
    """Adds ``tenant_id``, ``correlation_id`` and ``saga_id`` to every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Stamp the record; never drops one."""
        if getattr(record, "tenant_id", None) is None:
            record.tenant_id = _tenant_id.get()
        if getattr(record, "correlation_id", None) is None:
            record.correlation_id = _correlation_id.get()
        if getattr(record, "saga_id", None) is None:
            record.saga_id = _saga_id.get()
        return True


_FILTER = ContextFilter()


def get_logger(name: str) -> logging.Logger:
    """Return a logger whose records carry the framework's context fields."""
    logger = logging.getLogger(name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


@contextmanager
def log_context(*, tenant_id: str | None = None, saga_id: str | None = None) -> Iterator[None]:
    """Set tenant and saga ids for every log record written inside the block."""
    tokens = []
    if tenant_id is not None:
        tokens.append((_tenant_id, _tenant_id.set(tenant_id)))
    if saga_id is not None:
        tokens.append((_saga_id, _saga_id.set(saga_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the context fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        payload: dict[str, object] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in _CONTEXT_FIELDS:
            payload[field] = getattr(record, field, None)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)
