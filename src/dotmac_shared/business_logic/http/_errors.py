"""Errors only the HTTP layer raises, beside the library's tree in ``exceptions.py``.

The tree::

    IdempotencyError
    ├── IdempotencyKeyMissingError  a route that requires an Idempotency-Key got none (400)
    └── IdempotencyKeyInvalidError  the header is not a Structured Field String (400)
    InvalidInputError
    └── RequestBodyTooLargeError    a keyed request's body is over the middleware's limit (413)
"""

from __future__ import annotations

from dotmac_shared.business_logic.exceptions import IdempotencyError, InvalidInputError

__all__ = ["IdempotencyKeyInvalidError", "IdempotencyKeyMissingError", "RequestBodyTooLargeError"]


class IdempotencyKeyMissingError(IdempotencyError):
    """The route requires an ``Idempotency-Key`` header and the request has none."""

    code = "idempotency_key_missing"


class IdempotencyKeyInvalidError(IdempotencyError):
    """The ``Idempotency-Key`` header is not a Structured Field String (RFC 8941, section 3.3.3)."""

    code = "idempotency_key_invalid"


class RequestBodyTooLargeError(InvalidInputError):
    """A request with an ``Idempotency-Key`` has a larger body than the middleware will hash."""

    code = "request_body_too_large"
