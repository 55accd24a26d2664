"""The FastAPI dependency for routes that require an ``Idempotency-Key``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Header, Request

from dotmac_shared.business_logic.exceptions import IdempotencyError
from dotmac_shared.business_logic.http._errors import IdempotencyKeyMissingError
from dotmac_shared.business_logic.http._idempotency import IDEMPOTENCY_HEADER, idempotency_key_of

__all__ = ["require_idempotency_key"]


async def require_idempotency_key(
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias=IDEMPOTENCY_HEADER,
            description=(
                "A unique key for this operation, as a Structured Field String "
                '(e.g. "8e03978e-40d5-43e8"); a retry with the same key and request '
                "replays the first response"
            ),
        ),
    ] = None,
) -> str:
    """Require an ``Idempotency-Key`` on a route: ``Depends(require_idempotency_key)``.

    The header is documented in the route's OpenAPI operation. :class:`IdempotencyMiddleware`
    must wrap the app: it does the work; this dependency only refuses a request without a key.

    Returns:
        The key (unquoted).

    Raises:
        IdempotencyKeyMissingError: No header (400 through the problem handlers).
        IdempotencyError: The header is there but no ``IdempotencyMiddleware`` handled the
            request (it is not installed, or does not cover the method): a deployment error,
            answered with 500 rather than running the route without protection.
    """
    if idempotency_key is None:
        raise IdempotencyKeyMissingError(f"this route requires an {IDEMPOTENCY_HEADER} header")
    key = idempotency_key_of(request)
    if key is None:
        raise IdempotencyError(
            f"no IdempotencyMiddleware handled this {request.method} request: install it and "
            f"let it cover {request.method}"
        )
    return key
