from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from dotmac_shared.business_logic import InvalidInputError
from dotmac_shared.business_logic.operations._adapters import (
    TOKEN_DECLINED,
    TOKEN_SUCCESS,
    TOKEN_TRANSIENT,
    OutboxNotifier,
    RecordingNetworkProvisioner,
    SandboxPaymentGateway,
)
from dotmac_shared.business_logic.operations._ports import (
    ChargeStatus,
    NetworkProvisioner,
    Notifier,
    PaymentGateway,
    TransientGatewayError,
)
from dotmac_shared.business_logic.operations.models import GatewayLedgerEntry, OutboxMessage


async def _ledger_size(factory) -> int:
    async with factory() as session:
        return (
            await session.execute(select(func.count()).select_from(GatewayLedgerEntry))
        ).scalar_one()


def test_defaults_satisfy_their_ports(session_factory):
    assert isinstance(SandboxPaymentGateway(session_factory), PaymentGateway)
    assert isinstance(RecordingNetworkProvisioner(), NetworkProvisioner)
    assert isinstance(OutboxNotifier(), Notifier)


async def test_second_charge_with_same_key_is_replayed_not_charged_even_by_a_new_gateway(
    session_factory,
):
    charge = {"idempotency_key": "inv-1", "payment_method_token": TOKEN_SUCCESS, "currency": "USD"}
    first = await SandboxPaymentGateway(session_factory).charge(amount=Decimal("54.36"), **charge)
    # A new gateway object stands for a new process after a crash: the ledger still knows.
    second = await SandboxPaymentGateway(session_factory).charge(amount=Decimal("54.36"), **charge)
    assert first.status is second.status is ChargeStatus.SUCCEEDED
    assert (first.replayed, second.replayed) == (False, True)
    assert first.reference == second.reference
    assert await _ledger_size(session_factory) == 1


async def test_declined_token_is_declined(session_factory):
    result = await SandboxPaymentGateway(session_factory).charge(
        idempotency_key="inv-2",
        payment_method_token=TOKEN_DECLINED,
        amount=Decimal("10"),
        currency="USD",
    )
    assert result.status is ChargeStatus.DECLINED and result.message == "card declined"


async def test_transient_token_fails_once_then_succeeds_when_retried(session_factory):
    gateway = SandboxPaymentGateway(session_factory)
    charge = {
        "idempotency_key": "inv-3",
        "payment_method_token": TOKEN_TRANSIENT,
        "amount": Decimal("5"),
        "currency": "USD",
    }
    with pytest.raises(TransientGatewayError):
        await gateway.charge(**charge)
    assert await _ledger_size(session_factory) == 0
    assert (await gateway.charge(**charge)).status is ChargeStatus.SUCCEEDED


async def test_same_key_with_another_amount_is_refused(session_factory):
    gateway = SandboxPaymentGateway(session_factory)
    base = {"idempotency_key": "inv-4", "payment_method_token": TOKEN_SUCCESS, "currency": "USD"}
    await gateway.charge(amount=Decimal("5"), **base)
    with pytest.raises(InvalidInputError, match="charged before"):
        await gateway.charge(amount=Decimal("6"), **base)


async def test_non_positive_amount_is_refused(session_factory):
    with pytest.raises(InvalidInputError) as info:
        await SandboxPaymentGateway(session_factory).charge(
            idempotency_key="k",
            payment_method_token=TOKEN_SUCCESS,
            amount=Decimal(0),
            currency="USD",
        )
    assert info.value.field == "amount"


async def test_provisioner_records_configuration_once_and_removes_it(session_factory):
    provisioner = RecordingNetworkProvisioner()
    async with session_factory() as session, session.begin():
        first = await provisioner.configure(
            session, tenant_id="t", service_id="svc-1", configuration={"ip": "10.0.0.2"}
        )
        again = await provisioner.configure(
            session, tenant_id="t", service_id="svc-1", configuration={"ip": "10.0.0.9"}
        )
    assert first == again == {"ip": "10.0.0.2"}
    async with session_factory() as session, session.begin():
        await provisioner.deconfigure(session, service_id="svc-1")
        assert (
            await provisioner.configure(
                session, tenant_id="t", service_id="svc-1", configuration={"ip": "10.0.0.3"}
            )
        ) == {"ip": "10.0.0.3"}


async def test_outbox_message_rolls_back_with_its_transaction_and_dedupes(session_factory):
    notifier = OutboxNotifier()
    message = {
        "tenant_id": "t",
        "recipient": "a@example.com",
        "template": "service_activated",
        "payload": {"service_id": "s1"},
        "dedupe_key": "svc-s1-activated",
    }
    async with session_factory() as session:
        await session.begin()
        assert await notifier.notify(session, **message)
        await session.rollback()  # the state change failed: its notification goes too
    async with session_factory() as session, session.begin():
        assert await notifier.notify(session, **message)
        assert not await notifier.notify(session, **message)
    async with session_factory() as session:
        pending = await notifier.pending(session)
        assert [m.dedupe_key for m in pending] == ["svc-s1-activated"]
        total = (await session.execute(select(func.count()).select_from(OutboxMessage))).scalar()
        assert total == 1


async def test_batch_charge_returns_each_outcome_in_place_and_replays_known_keys(session_factory):
    from dotmac_shared.business_logic.operations._ports import ChargeRequest

    gateway = SandboxPaymentGateway(session_factory)
    requests = [
        ChargeRequest("k-ok", TOKEN_SUCCESS, Decimal("1.00"), "USD"),
        ChargeRequest("k-no", TOKEN_DECLINED, Decimal("2.00"), "USD"),
        ChargeRequest("k-flaky", TOKEN_TRANSIENT, Decimal("3.00"), "USD"),
    ]
    first = await gateway.charge_batch(requests)
    assert [type(o).__name__ for o in first] == [
        "ChargeResult",
        "ChargeResult",
        "TransientGatewayError",
    ]
    again = await gateway.charge_batch(requests)
    assert [o.replayed for o in again] == [True, True, False]  # type: ignore[union-attr]
    assert [o.status for o in again] == [  # type: ignore[union-attr]
        ChargeStatus.SUCCEEDED,
        ChargeStatus.DECLINED,
        ChargeStatus.SUCCEEDED,
    ]
    assert await _ledger_size(session_factory) == 3


async def test_batch_with_a_mismatching_key_charges_nothing(session_factory):
    from dotmac_shared.business_logic.operations._ports import ChargeRequest

    gateway = SandboxPaymentGateway(session_factory)
    await gateway.charge_batch([ChargeRequest("k1", TOKEN_SUCCESS, Decimal("1"), "USD")])
    with pytest.raises(InvalidInputError):
        await gateway.charge_batch(
            [
                ChargeRequest("k2", TOKEN_SUCCESS, Decimal("1"), "USD"),
                ChargeRequest("k1", TOKEN_SUCCESS, Decimal("9"), "USD"),
            ]
        )
    assert await _ledger_size(session_factory) == 1


async def test_notify_many_counts_only_new_messages(session_factory):
    from dotmac_shared.business_logic.operations._ports import Notification

    notices = [
        Notification("t", f"{i}@x.io", "invoice_issued", {"i": i}, f"d{i}") for i in range(3)
    ]
    async with session_factory() as session, session.begin():
        assert await OutboxNotifier().notify_many(session, notices) == 3
        assert await OutboxNotifier().notify_many(session, [*notices, notices[0]]) == 0
        assert await OutboxNotifier().notify_many(session, []) == 0
