"""Logging context, correlation ids, metrics and traces (OpenTelemetry API)."""

from dotmac_shared.business_logic.observability.context import (
    correlation_scope,
    get_correlation_id,
    new_correlation_id,
    set_correlation_id,
)

__all__ = [
    "correlation_scope",
    "get_correlation_id",
    "new_correlation_id",
    "set_correlation_id",
]
