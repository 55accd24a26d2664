"""What a transport receives and promises: :class:`OutgoingNotice`, :class:`Transport`."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

__all__ = ["OutgoingNotice", "Transport"]


@dataclasses.dataclass(frozen=True, slots=True)
class OutgoingNotice:
    """One claimed outbox row, handed to the transport of its channel.

    Attributes:
        id: The outbox row's id.
        dedupe_key: Stable across every attempt: the e-mail's ``Message-ID`` and the
            webhook's ``X-Dotmac-Webhook-Id``, so that a receiver can drop duplicates.
        tenant_id: The tenant the notice belongs to.
        channel: ``"email"`` or ``"webhook"`` (the transport's ``channel``).
        recipient: An e-mail address.
        template: The notice, e.g. ``"invoice_issued"``.
        payload: The notice's variables.
        created_at: When the notice was queued.
        attempt: This attempt's number, 1 for the first.
    """

    id: int
    dedupe_key: str
    tenant_id: str
    channel: str
    recipient: str
    template: str
    payload: Mapping[str, Any]
    created_at: dt.datetime
    attempt: int


@runtime_checkable
class Transport(Protocol):
    """Delivers notices of one channel (``"email"``, ``"webhook"``).

    ``deliver`` returns when the receiver accepted the notice and raises
    :class:`~dotmac_shared.business_logic.exceptions.NotificationDeliveryError` otherwise,
    saying whether the failure is transient. It may be called again for the same notice
    (delivery is at least once): receivers deduplicate on ``dedupe_key``.
    """

    @property
    def channel(self) -> str:
        """The outbox ``channel`` this transport delivers."""
        ...

    async def deliver(self, notice: OutgoingNotice) -> None:
        """Deliver ``notice``; raise ``NotificationDeliveryError`` if it was not accepted."""
        ...

    async def aclose(self) -> None:
        """Release connections (the relay calls it when it stops)."""
        ...
