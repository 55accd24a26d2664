"""The request's correlation id, from ``X-Request-ID`` or ``traceparent``, for everything it does.

One id ties a request to its log lines (the ``ContextFilter`` reads it), its span (attribute
``dotmac.correlation_id``), the sagas it starts (``SagaContext.correlation_id``) and its
error bodies. It is, in order: a well-formed ``X-Request-ID`` header; the trace id of a
valid W3C ``traceparent`` header; a new random id. The response carries it back in
``X-Request-ID``.
"""

from __future__ import annotations

import re
from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dotmac_shared.business_logic.observability._context import (
    correlation_scope,
    new_correlation_id,
)
from dotmac_shared.business_logic.observability._log import get_logger
from dotmac_shared.business_logic.observability._telemetry import start_span

__all__ = ["REQUEST_ID_HEADER", "CorrelationMiddleware", "correlation_id_of"]

REQUEST_ID_HEADER: Final = "X-Request-ID"
# Stored ids are at most 64 characters (saga_executions.correlation_id); printable and
# without separators, so that an id cannot forge log fields or header lines.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
# W3C Trace Context, version 00 (later versions start with the same four fields).
_TRACEPARENT = re.compile(
    r"(?P<version>[0-9a-f]{2})-(?P<trace_id>[0-9a-f]{32})-(?P<parent_id>[0-9a-f]{16})-[0-9a-f]{2}"
    r"(?:-.*)?"
)
_logger = get_logger(__name__)


def correlation_id_of(headers: dict[str, str]) -> str:
    """The correlation id a request with these (lower-cased) headers gets.

    Example:
        >>> correlation_id_of({"x-request-id": "req-7"})
        'req-7'
        >>> correlation_id_of(
        ...     {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
        ... )
        '4bf92f3577b34da6a3ce929d0e0e4736'
    """
    request_id = headers.get("x-request-id", "").strip()
    if _REQUEST_ID.fullmatch(request_id):
        return request_id
    match = _TRACEPARENT.fullmatch(headers.get("traceparent", "").strip())
    if (
        match is not None
        and match["version"] != "ff"
        and match["trace_id"] != "0" * 32
        and match["parent_id"] != "0" * 16
    ):
        return match["trace_id"]
    return new_correlation_id()


class CorrelationMiddleware:
    """ASGI middleware: sets the correlation id for the request and echoes it back.

    Add it last, so that it runs first: the authentication and idempotency middlewares'
    refusals then carry the id too.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one request under its correlation id."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {
            key.decode("latin-1").lower(): value.decode("latin-1")
            for key, value in scope["headers"]
        }
        cid = correlation_id_of(headers)
        status: list[int] = []

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = cid
                status.append(int(message["status"]))
            await send(message)

        # Reset when the request ends; the background work a request started (a billing
        # run) copied the context when it was created, so it keeps the id.
        with correlation_scope(cid):
            try:
                with start_span(
                    "http.request",
                    {
                        "http.request.method": scope["method"],
                        "url.path": scope["path"],
                        "dotmac.correlation_id": cid,
                    },
                ):
                    await self.app(scope, receive, send_with_id)
            finally:
                _logger.info(
                    "HTTP %s %s -> %s",
                    scope["method"],
                    scope["path"],
                    status[0] if status else "no response",
                )
