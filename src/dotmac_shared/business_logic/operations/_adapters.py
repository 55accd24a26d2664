"""The default adapters: a sandbox payment gateway, a recording provisioner, an outbox notifier."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.operations._ports import (
    ChargeRequest,
    ChargeResult,
    ChargeStatus,
    Notification,
    TransientGatewayError,
)
from dotmac_shared.business_logic.operations.models import (
    GatewayLedgerEntry,
    NetworkConfiguration,
    OutboxMessage,
)
from dotmac_shared.business_logic.persistence._sql import insert_for

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
        request = ChargeRequest(idempotency_key, payment_method_token, amount, currency)
        (outcome,) = await self.charge_batch([request])
        if isinstance(outcome, TransientGatewayError):
            raise outcome
        return outcome

    async def charge_batch(
        self, requests: Sequence[ChargeRequest]
    ) -> list[ChargeResult | TransientGatewayError]:
        """Charge many requests in one ledger transaction; transient failures come back in place.

        Raises:
            InvalidInputError: A non-positive amount, or a key charged before with other
                parameters (nothing of the batch is charged then).
        """
        outcomes: dict[str, ChargeResult | TransientGatewayError] = {}
        rows: list[dict[str, Any]] = []
        for request in requests:
            if request.amount <= 0:
                raise InvalidInputError(
                    f"charge amount must be positive, got {request.amount}", field="amount"
                )
            key = request.idempotency_key
            if request.payment_method_token == TOKEN_TRANSIENT and key not in self._transient_seen:
                self._transient_seen.add(key)
                outcomes[key] = TransientGatewayError(f"sandbox: transient failure for {key}")
                continue
            declined = request.payment_method_token == TOKEN_DECLINED
            rows.append(
                {
                    "idempotency_key": key,
                    "payment_method_token": request.payment_method_token,
                    "amount": request.amount,
                    "currency": request.currency,
                    "status": (ChargeStatus.DECLINED if declined else ChargeStatus.SUCCEEDED).value,
                    "reference": "ch_" + hashlib.sha256(key.encode()).hexdigest()[:24],
                }
            )
        if rows:
            async with self._session_factory() as session, session.begin():
                # Insert first; only keys that conflict (charged before) are read back.
                inserted = await session.execute(
                    insert_for(session, GatewayLedgerEntry)
                    .on_conflict_do_nothing(index_elements=["idempotency_key"])
                    .returning(GatewayLedgerEntry.idempotency_key),
                    rows,
                )
                new_keys = set(inserted.scalars())
                replayed_keys = [
                    r["idempotency_key"] for r in rows if r["idempotency_key"] not in new_keys
                ]
                existing: dict[str, GatewayLedgerEntry] = {}
                if replayed_keys:
                    found = await session.execute(
                        select(GatewayLedgerEntry).where(
                            GatewayLedgerEntry.idempotency_key.in_(replayed_keys)
                        )
                    )
                    existing = {e.idempotency_key: e for e in found.scalars()}
                for row in rows:
                    key = row["idempotency_key"]
                    if key in new_keys:
                        status = ChargeStatus(row["status"])
                        message = "card declined" if status is ChargeStatus.DECLINED else None
                        outcomes[key] = ChargeResult(
                            status, row["reference"], row["amount"], False, message
                        )
                        continue
                    entry = existing[key]
                    if (
                        entry.amount != row["amount"]
                        or entry.payment_method_token != row["payment_method_token"]
                    ):
                        raise InvalidInputError(
                            f"idempotency key {key!r} was charged before with other parameters",
                            field="idempotency_key",
                        )
                    outcomes[key] = ChargeResult(
                        ChargeStatus(entry.status), entry.reference, entry.amount, replayed=True
                    )
        return [outcomes[request.idempotency_key] for request in requests]


class RecordingNetworkProvisioner:
    """Records the configuration (``dotmac_network_configurations``) in the caller's transaction."""

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
    """The transactional outbox: ``dotmac_notification_outbox`` rows in the caller's transaction."""

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
        notification = Notification(tenant_id, recipient, template, payload, dedupe_key, channel)
        return await self.notify_many(session, [notification]) == 1

    async def notify_many(
        self, session: AsyncSession, notifications: Sequence[Notification]
    ) -> int:
        """Queue many notifications with one statement; returns how many were new."""
        if not notifications:
            return 0
        result = await session.execute(
            insert_for(session, OutboxMessage)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(OutboxMessage.id),
            [
                {
                    "tenant_id": n.tenant_id,
                    "dedupe_key": n.dedupe_key,
                    "channel": n.channel,
                    "recipient": n.recipient,
                    "template": n.template,
                    "payload": dict(n.payload),
                }
                for n in notifications
            ],
        )
        return len(result.all())

    async def pending(self, session: AsyncSession, *, limit: int = 100) -> list[OutboxMessage]:
        """Return up to ``limit`` undelivered (``pending``) messages, oldest first.

        The dead letter is not pending. To deliver them, run the relay
        (``operations.notifications.NotificationRelay``).
        """
        rows = await session.execute(
            select(OutboxMessage)
            .where(OutboxMessage.status == "pending")
            .order_by(OutboxMessage.id)
            .limit(limit)
        )
        return list(rows.scalars())
