"""Ports: what the operations need from the outside world, each with a real default.

Users plug in their own payment gateway, network provisioner or notifier by passing an
object with these methods; the defaults live in :mod:`.adapters`.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "BatchPaymentGateway",
    "ChargeRequest",
    "ChargeResult",
    "ChargeStatus",
    "NetworkProvisioner",
    "Notification",
    "Notifier",
    "PaymentGateway",
    "TransientGatewayError",
]


class ChargeStatus(enum.StrEnum):
    """Outcome of one charge attempt."""

    SUCCEEDED = "succeeded"  # the money moved
    DECLINED = "declined"  # the provider refused for good (card declined); do not retry


class TransientGatewayError(Exception):
    """The provider could not answer now (timeout, 5xx); the same charge may be retried."""


@dataclasses.dataclass(frozen=True, slots=True)
class ChargeResult:
    """What the gateway says about a charge; ``replayed`` if the key was charged before."""

    status: ChargeStatus
    reference: str
    amount: Decimal
    replayed: bool = False
    message: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ChargeRequest:
    """One charge to submit: ``idempotency_key`` makes a resubmission harmless."""

    idempotency_key: str
    payment_method_token: str
    amount: Decimal
    currency: str


@dataclasses.dataclass(frozen=True, slots=True)
class Notification:
    """One notice to queue; ``dedupe_key`` makes a repeated write a no-op."""

    tenant_id: str
    recipient: str
    template: str
    payload: Mapping[str, Any]
    dedupe_key: str
    channel: str = "email"


@runtime_checkable
class PaymentGateway(Protocol):
    """Charges a payment method at most once per idempotency key."""

    async def charge(
        self,
        *,
        idempotency_key: str,
        payment_method_token: str,
        amount: Decimal,
        currency: str,
    ) -> ChargeResult:
        """Charge ``amount``; a repeated key returns the first result without charging again.

        Raises:
            TransientGatewayError: Nothing was decided; retry with the same key.
        """
        ...


@runtime_checkable
class BatchPaymentGateway(PaymentGateway, Protocol):
    """A gateway that also accepts many charges in one submission (bulk APIs, ledgers)."""

    async def charge_batch(
        self, requests: Sequence[ChargeRequest]
    ) -> list[ChargeResult | TransientGatewayError]:
        """Charge each request once; a transient failure is returned in its slot, not raised."""
        ...


@runtime_checkable
class NetworkProvisioner(Protocol):
    """Applies and removes a service's network configuration."""

    async def configure(
        self,
        session: AsyncSession,
        *,
        tenant_id: str,
        service_id: str,
        configuration: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Apply ``configuration`` for ``service_id``; idempotent for the same service."""
        ...

    async def deconfigure(self, session: AsyncSession, *, service_id: str) -> None:
        """Remove what :meth:`configure` applied; a no-op if nothing was applied."""
        ...


@runtime_checkable
class Notifier(Protocol):
    """Sends customer notifications, written in the transaction of the state they announce."""

    async def notify(
        self,
        session: AsyncSession,
        *,
        tenant_id: str,
        recipient: str,
        template: str,
        payload: Mapping[str, Any],
        dedupe_key: str,
        channel: str = "email",
    ) -> bool:
        """Queue one notification; returns False if ``dedupe_key`` was queued before."""
        ...

    async def notify_many(
        self, session: AsyncSession, notifications: Sequence[Notification]
    ) -> int:
        """Queue many notifications in the caller's transaction; returns how many were new."""
        ...
