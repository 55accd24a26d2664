"""Webhook signatures: ``X-Dotmac-Signature: t=<unix seconds>,v1=<hex>`` (Stripe-like).

``v1`` is ``HMAC-SHA256(secret, f"{t}.{body}")`` in lowercase hex, over the exact request
body bytes. The timestamp is signed too, so a receiver that refuses old timestamps
(:func:`verify_webhook_signature`'s ``tolerance``) is safe from replays of a captured
request. A header may carry several ``v1`` entries (while a secret is being rotated).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from dotmac_shared.business_logic.clock import Clock, as_clock
from dotmac_shared.business_logic.exceptions import InvalidInputError

__all__ = ["SIGNATURE_HEADER", "WEBHOOK_ID_HEADER", "sign_webhook", "verify_webhook_signature"]

#: The header carrying the signature.
SIGNATURE_HEADER = "X-Dotmac-Signature"
#: The header carrying the notice's dedupe key: the same on every retry of one notice.
WEBHOOK_ID_HEADER = "X-Dotmac-Webhook-Id"


def _digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def sign_webhook(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The ``X-Dotmac-Signature`` value of ``body`` sent at ``timestamp`` (unix seconds).

    Example:
        >>> sign_webhook("s3cret", b"{}", 1700000000)[:13]
        't=1700000000,'
    """
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def verify_webhook_signature(
    secret: str | bytes,
    body: bytes,
    header: str | None,
    *,
    tolerance: float = 300.0,
    clock: Clock | None = None,
) -> None:
    """Check a received webhook: the signature matches ``body`` and is recent.

    For receivers: pass the raw request body (before any JSON parsing) and the
    ``X-Dotmac-Signature`` header.

    Args:
        secret: The shared secret the relay signs with.
        body: The request body, exactly as received.
        header: The ``X-Dotmac-Signature`` header (``None`` if absent).
        tolerance: Most seconds the timestamp may be from now (either way).
        clock: The time source (the system's by default).

    Raises:
        InvalidInputError: The header is missing or malformed, the timestamp is outside the
            tolerance, or no ``v1`` signature matches; ``field`` is the header's name.

    Example:
        >>> import time
        >>> t = int(time.time())
        >>> verify_webhook_signature("s3cret", b"{}", sign_webhook("s3cret", b"{}", t))
    """
    if not header:
        raise InvalidInputError(f"missing {SIGNATURE_HEADER} header", field=SIGNATURE_HEADER)
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if name == "t":
            try:
                timestamp = int(value)
            except ValueError:
                timestamp = None
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise InvalidInputError(
            f"malformed {SIGNATURE_HEADER} header: expected t=<unix seconds>,v1=<hex>",
            field=SIGNATURE_HEADER,
        )
    now = as_clock(clock).now()
    sent = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    if abs((now - sent).total_seconds()) > tolerance:
        raise InvalidInputError(
            f"{SIGNATURE_HEADER} timestamp {timestamp} is more than {tolerance:g} s from now",
            field=SIGNATURE_HEADER,
        )
    expected = _digest(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise InvalidInputError(
            f"{SIGNATURE_HEADER} does not match the body (wrong secret or altered body)",
            field=SIGNATURE_HEADER,
        )
