"""The default adapters: a sandbox payment gateway, a recording provisioner, an outbox notifier."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.operations.ports import (
    ChargeResult,
    ChargeStatus,
    TransientGatewayError,
)
from dotmac_shared.business_logic.persistence.models import (
    GatewayLedgerEntry,
    NetworkConfiguration,
    OutboxMessage,
)
from dotmac_shared.business_logic.persistence.sql import insert_for

__all__ = [
    "OutboxNotifier",
    "RecordingNetworkProvisioner",
    "SandboxPaymentGateway",
    "TOKEN_DECLINED",
    "TOKEN_SUCCESS",
    "TOKEN_TRANSIENT",
]

#: Always succeeds.
TOKEN_SUCCESS = "tok_success"
#: Always declined (a final answer, like an expired card).
TOKEN_DECLINED = "tok_declined"
#: Fails transiently on the first attempt of each idempotency key, then succeeds.
TOKEN_TRANSIENT = "tok_transient"


class SandboxPaymentGateway:
    """A payment provider stand-in that keeps its own ledger, as a real provider would.

    The outcome is decided by the payment-method token (``TOKEN_*``). The ledger's primary
    key is the idempotency key, and the entry is committed in the provider's own transaction,
    so a second charge with the same key returns the first result (``replayed=True``) even
    after the caller crashed between charging and recording the payment.
    """

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self._session_factory = session_factory
        # Keys that already failed transiently once (per gateway object, like a flaky link).
        self._transient_seen: set[str] = set()

    async def charge(
        self,
        *,
        idempotency_key: str,
        payment_method_token: str,
        amount: Decimal,
        currency: str,
    ) -> ChargeResult:
        """Charge ``amount`` once per ``idempotency_key``; see the class docstring."""
        if amount <= 0:
            raise InvalidInputError(f"charge amount must be positive, got {amount}", field="amount")
        if payment_method_token == TOKEN_TRANSIENT and idempotency_key not in self._transient_seen:
            self._transient_seen.add(idempotency_key)
            raise TransientGatewayError(f"sandbox: transient failure for {idempotency_key}")
        status = (
            ChargeStatus.DECLINED
            if payment_method_token == TOKEN_DECLINED
            else ChargeStatus.SUCCEEDED
        )
        reference = "ch_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
        async with self._session_factory() as session, session.begin():
            inserted = await session.execute(
                insert_for(session, GatewayLedgerEntry)
                .values(
                    idempotency_key=idempotency_key,
                    payment_method_token=payment_method_token,
                    amount=amount,
                    currency=currency,
                    status=status.value,
                    reference=reference,
                )
                .on_conflict_do_nothing(index_elements=["idempotency_key"])
                .returning(GatewayLedgerEntry.reference)
            )
            if inserted.first() is not None:
                message = "card declined" if status is ChargeStatus.DECLINED else None
                return ChargeResult(status, reference, amount, replayed=False, message=message)
            existing = await session.get(GatewayLedgerEntry, idempotency_key)
        if existing is None:  # pragma: no cover - a conflict implies the row exists
            raise TransientGatewayError("sandbox: ledger entry vanished")
        if existing.amount != amount or existing.payment_method_token != payment_method_token:
            raise InvalidInputError(
                f"idempotency key {idempotency_key!r} was charged before with other parameters",
                field="idempotency_key",
            )
        return ChargeResult(
            ChargeStatus(existing.status), existing.reference, existing.amount, replayed=True
        )


class RecordingNetworkProvisioner:
    """Records the configuration in ``network_configurations`` in the caller's transaction."""

    async def configure(
        self,
        session: AsyncSession,
        *,
        tenant_id: str,
        service_id: str,
        configuration: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Record ``configuration``; a repeat for the same service keeps the first record."""
        await session.execute(
            insert_for(session, NetworkConfiguration)
            .values(service_id=service_id, tenant_id=tenant_id, configuration=dict(configuration))
            .on_conflict_do_nothing(index_elements=["service_id"])
        )
        row = await session.get(NetworkConfiguration, service_id)
        return dict(row.configuration) if row is not None else dict(configuration)

    async def deconfigure(self, session: AsyncSession, *, service_id: str) -> None:
        """Delete the recorded configuration of ``service_id``."""
        await session.execute(
            delete(NetworkConfiguration).where(NetworkConfiguration.service_id == service_id)
        )


class OutboxNotifier:
    """The transactional outbox: a row in ``notification_outbox``, in the caller's transaction."""

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
        """Queue a message unless ``dedupe_key`` is queued already; returns whether it queued."""
        result = await session.execute(
            insert_for(session, OutboxMessage)
            .values(
                tenant_id=tenant_id,
                dedupe_key=dedupe_key,
                channel=channel,
                recipient=recipient,
                template=template,
                payload=dict(payload),
            )
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(OutboxMessage.id)
        )
        return result.first() is not None

    async def pending(self, session: AsyncSession, *, limit: int = 100) -> list[OutboxMessage]:
        """Return up to ``limit`` unsent messages, oldest first (for a delivery worker)."""
        rows = await session.execute(
            select(OutboxMessage)
            .where(OutboxMessage.sent_at.is_(None))
            .order_by(OutboxMessage.id)
            .limit(limit)
        )
        return list(rows.scalars())
