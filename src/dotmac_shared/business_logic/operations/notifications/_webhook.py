"""The webhook transport: a signed JSON POST per notice (``httpx``).

The body is ``{"id", "type", "tenant_id", "recipient", "created_at", "attempt", "data"}``
(``id`` is the dedupe key, ``type`` the notice, ``data`` its payload). Headers:
``X-Dotmac-Webhook-Id`` (the dedupe key, the same on every retry) and
``X-Dotmac-Signature`` (see :func:`sign_webhook`). A 2xx answer is delivery; redirects are
not followed.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import httpx

from dotmac_shared.business_logic.clock import Clock, as_clock
from dotmac_shared.business_logic.exceptions import InvalidInputError, NotificationDeliveryError
from dotmac_shared.business_logic.operations.notifications._decide import (
    http_status_is_transient,
)
from dotmac_shared.business_logic.operations.notifications._signature import (
    SIGNATURE_HEADER,
    WEBHOOK_ID_HEADER,
    sign_webhook,
)
from dotmac_shared.business_logic.operations.notifications._transport import OutgoingNotice

__all__ = ["WebhookTransport", "webhook_body"]


def webhook_body(notice: OutgoingNotice) -> bytes:
    """The JSON body the webhook of ``notice`` carries (compact, keys sorted)."""
    document = {
        "id": notice.dedupe_key,
        "type": notice.template,
        "tenant_id": notice.tenant_id,
        "recipient": notice.recipient,
        "created_at": notice.created_at.isoformat(),
        "attempt": notice.attempt,
        "data": dict(notice.payload),
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"), default=str).encode()


class WebhookTransport:
    """POSTs each notice to one URL, signed with a shared secret.

    Args:
        url: The receiver's ``http://`` or ``https://`` URL.
        secret: The HMAC key (shared with the receiver, who checks it with
            :func:`verify_webhook_signature`).
        timeout: Seconds for the whole request.
        clock: The time source of the signature's timestamp.
        channel: The outbox channel it delivers (``"webhook"``).

    Raises:
        InvalidInputError: ``url`` is not an http(s) URL or ``secret`` is empty.
    """

    def __init__(
        self,
        url: str,
        *,
        secret: str | bytes,
        timeout: float = 10.0,
        clock: Clock | None = None,
        channel: str = "webhook",
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInputError(
                f"webhook URL must be http(s)://host/..., got scheme {parts.scheme!r}",
                field="webhook_url",
            )
        if not secret:
            raise InvalidInputError("a webhook needs a non-empty secret", field="webhook_secret")
        self.url = url
        self.channel = channel
        self._secret = secret
        self._clock = as_clock(clock)
        self._client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    def __repr__(self) -> str:
        parts = urlsplit(self.url)
        return f"WebhookTransport({parts.scheme}://{parts.hostname}:{parts.port or ''})"

    async def deliver(self, notice: OutgoingNotice) -> None:
        """POST ``notice`` (the contract is :class:`Transport`'s).

        Raises:
            NotificationDeliveryError: 5xx, 408, 429, timeouts and connection failures are
                transient; other answers that are not 2xx are permanent.
        """
        body = webhook_body(notice)
        timestamp = int(self._clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            WEBHOOK_ID_HEADER: notice.dedupe_key,
            SIGNATURE_HEADER: sign_webhook(self._secret, body, timestamp),
        }
        try:
            response = await self._client.post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise NotificationDeliveryError(
                f"webhook {self!r} timed out: {exc}", transient=True, reason="timeout"
            ) from exc
        except httpx.TransportError as exc:
            raise NotificationDeliveryError(
                f"webhook {self!r} unreachable: {type(exc).__name__}: {exc}",
                transient=True,
                reason="connect",
            ) from exc
        if response.is_success:
            return
        status = response.status_code
        raise NotificationDeliveryError(
            f"webhook {self!r} answered {status} {response.reason_phrase} "
            f"for {notice.dedupe_key!r}: {response.text[:200]}",
            transient=http_status_is_transient(status),
            reason=f"http_{status}",
        )

    async def aclose(self) -> None:
        """Close the HTTP client's connections."""
        await self._client.aclose()
