"""Logging context, correlation ids, metrics and traces (OpenTelemetry API)."""

from dotmac_shared.business_logic.observability._context import (
    correlation_scope,
    get_correlation_id,
    new_correlation_id,
    set_correlation_id,
)
from dotmac_shared.business_logic.observability._log import (
    ContextFilter,
    JsonFormatter,
    get_logger,
    log_context,
)
from dotmac_shared.business_logic.observability._telemetry import get_meter, get_tracer

__all__ = [
    "ContextFilter",
    "JsonFormatter",
    "correlation_scope",
    "get_correlation_id",
    "get_logger",
    "get_meter",
    "get_tracer",
    "log_context",
    "new_correlation_id",
    "set_correlation_id",
]
