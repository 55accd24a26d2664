"""The manager's semantics, identical on every store (SQLite, PostgreSQL, Redis)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import Decimal

import pytest

from dotmac_shared.business_logic import (
    IdempotencyError,
    IdempotencyPayloadMismatchError,
    IdempotencyRetriesExhaustedError,
    InvalidInputError,
    OperationInProgressError,
    PersistenceError,
    ResultSerializationError,
)
from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.idempotency import (
    IdempotencyKey,
    IdempotencyManager,
    RecordStatus,
    StoredRecord,
)
from dotmac_shared.business_logic.persistence._types import utcnow
from tests.idempotency.operations import (
    CALLS,
    Broken,
    ChargeCard,
    RefundCard,
)


def payload(**extra: object) -> dict:
    return {"id": uuid.uuid4().hex, "amount": "12.50", **extra}


async def test_first_call_runs_and_stores_when_key_is_new(manager):
    data = payload()
    key = IdempotencyKey.generate("test_charge_card", "tenant-a", data)
    result = await manager.execute_idempotent(key, data, {"user_id": "u1"})
    assert result.success and not result.from_cache
    assert result.data == {
        "charged": Decimal("12.50"),
        "tenant": "tenant-a",
        "user": "u1",
        "run": 1,
    }
    assert result.attempts == 1 and result.claims == 1
    record = await manager.get_record(key)
    assert record is not None and record.status is RecordStatus.COMPLETED


async def test_replay_returns_stored_result_without_running_when_called_again(manager):
    data = payload()
    key = IdempotencyKey.generate("test_charge_card", "tenant-a", data)
    first = await manager.execute_idempotent(idempotency_key=key, operation_data=data)
    again = await manager.execute_idempotent(idempotency_key=key, operation_data=data)
    assert again.from_cache and again.success and again.attempts == 0
    assert again.data == first.data
    assert isinstance(again.data["charged"], Decimal)
    assert CALLS[data["id"]] == 1


async def test_client_key_with_other_payload_is_refused_when_reused(manager):
    data = payload()
    context = {"tenant_id": "tenant-a"}
    key = f"client-{uuid.uuid4()}"
    await manager.execute_idempotent(key, data, context, operation=ChargeCard)
    other = {**data, "amount": "99.00"}
    with pytest.raises(IdempotencyPayloadMismatchError) as caught:
        await manager.execute_idempotent(key, other, context, operation=ChargeCard)
    assert caught.value.idempotency_key == key
    assert CALLS[data["id"]] == 1


async def test_generated_key_is_refused_when_data_differs_from_what_it_was_made_for(manager):
    data = payload()
    key = IdempotencyKey.generate("test_charge_card", "tenant-a", data)
    with pytest.raises(IdempotencyPayloadMismatchError):
        await manager.execute_idempotent(key, {**data, "amount": "1"})
    assert CALLS[data["id"]] == 0


async def test_tenants_never_share_results_when_client_keys_collide(manager):
    key = f"shared-{uuid.uuid4()}"
    a = await manager.execute_idempotent(key, payload(), {"tenant_id": "a"}, operation=ChargeCard)
    b = await manager.execute_idempotent(key, payload(), {"tenant_id": "b"}, operation=ChargeCard)
    assert not a.from_cache and not b.from_cache
    assert (a.data["tenant"], b.data["tenant"]) == ("a", "b")


async def test_concurrent_caller_gets_in_progress_when_holder_is_running(manager):
    data = payload(delay=0.3)
    key = IdempotencyKey.generate("test_charge_card", "t", data)
    holder = asyncio.create_task(manager.execute_idempotent(key, data))
    await asyncio.sleep(0.1)
    with pytest.raises(OperationInProgressError) as caught:
        await manager.execute_idempotent(key, data)
    assert 0 < caught.value.retry_after <= 30
    assert (await holder).success
    assert CALLS[data["id"]] == 1


async def test_retry_after_follows_the_observed_duration_when_calls_of_the_type_finished(manager):
    """A call that usually finishes quickly is not worth waiting out its lease for."""
    warm = payload()
    await manager.execute_idempotent(IdempotencyKey.generate("test_charge_card", "t", warm), warm)
    data = payload(delay=0.3)
    key = IdempotencyKey.generate("test_charge_card", "t", data)
    holder = asyncio.create_task(manager.execute_idempotent(key, data))
    await asyncio.sleep(0.1)
    with pytest.raises(OperationInProgressError) as caught:
        await manager.execute_idempotent(key, data)
    assert 0 < caught.value.retry_after < 5  # the lease has 30 s left; a warm call takes ms
    assert (await holder).success


async def test_waiting_caller_gets_the_result_when_holder_finishes_in_time(manager):
    data = payload(delay=0.2)
    key = IdempotencyKey.generate("test_charge_card", "t", data)
    holder = asyncio.create_task(manager.execute_idempotent(key, data))
    await asyncio.sleep(0.05)
    waited = await manager.execute_idempotent(key, data, wait=5)
    assert waited.from_cache and waited.data == (await holder).data
    assert CALLS[data["id"]] == 1


async def test_many_tasks_run_the_body_once_when_racing_on_one_key(manager):
    data = payload(delay=0.05)
    key = IdempotencyKey.generate("test_charge_card", "t", data)
    outcomes = await asyncio.gather(
        *(manager.execute_idempotent(key, data) for _ in range(25)), return_exceptions=True
    )
    results = [o for o in outcomes if not isinstance(o, BaseException)]
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(isinstance(e, OperationInProgressError) for e in errors)
    assert {r.data["run"] for r in results} == {1}
    assert CALLS[data["id"]] == 1


async def test_dead_claim_is_taken_over_when_its_lease_has_expired(manager, store):
    data = payload()
    key = IdempotencyKey.generate("test_charge_card", "t", data)
    past = utcnow() - dt.timedelta(seconds=5)
    dead = StoredRecord(
        tenant_id="t",
        key=key.key,
        operation_type=key.operation_type,
        payload_hash=key.payload_hash,
        status=RecordStatus.IN_PROGRESS,
        attempts=1,
        lease_owner="crashed-worker",
        lease_expires_at=past,
        expires_at=utcnow() + dt.timedelta(hours=1),
        created_at=past,
    )
    assert await store.insert_or_get(dead) is None
    result = await manager.execute_idempotent(key, data)
    assert result.success and not result.from_cache and result.claims == 2
    # The crashed holder, should it wake up, can no longer store anything.
    assert not await store.finish(dead.evolve(status=RecordStatus.COMPLETED, result={}))
    assert (await manager.execute_idempotent(key, data)).from_cache


async def test_retryable_error_is_retried_with_backoff_when_it_is_transient(manager):
    data = {"id": uuid.uuid4().hex, "fail_times": 2}
    key = IdempotencyKey.generate("test_flaky", "t", data)
    result = await manager.execute_idempotent(key, data)
    assert result.success and result.attempts == 3 and result.data == {"ok": True, "attempt": 3}


async def test_retries_exhausted_is_returned_when_every_attempt_fails(manager):
    data = {"id": uuid.uuid4().hex, "fail_times": 10}
    key = IdempotencyKey.generate("test_flaky", "t", data)
    result = await manager.execute_idempotent(key, data)
    assert not result.success and result.attempts == 4
    assert result.error["code"] == "idempotency_retries_exhausted"
    with pytest.raises(IdempotencyRetriesExhaustedError) as caught:
        await manager.execute_idempotent(key, data, raise_on_failure=True)
    assert caught.value.attempts == 4 and "transient" in str(caught.value.__cause__)


async def test_failure_is_not_cached_when_operation_does_not_cache_failures(manager):
    data = payload()
    key = IdempotencyKey.generate("test_broken", "t", data)
    first = await manager.execute_idempotent(key, data)
    second = await manager.execute_idempotent(key, data)
    assert not first.success and not second.from_cache
    assert first.error == {
        "error": "ValueError",
        "code": "operation_failed",
        "message": "card number is invalid",
    }
    assert CALLS[data["id"]] == 2
    assert await manager.get_record(key) is None
    with pytest.raises(ValueError, match="card number"):
        await manager.execute_idempotent(key, data, raise_on_failure=True)


async def test_failure_is_replayed_when_operation_caches_failures(manager):
    data = payload()
    key = IdempotencyKey.generate("test_broken_cached", "t", data)
    first = await manager.execute_idempotent(key, data)
    second = await manager.execute_idempotent(key, data)
    assert not first.success and second.from_cache and second.error == first.error
    assert CALLS[data["id"]] == 1
    with pytest.raises(IdempotencyError, match="stored failure"):
        await manager.execute_idempotent(key, data, raise_on_failure=True)


async def test_unencodable_result_is_an_error_and_stores_nothing_when_returned(manager):
    data = payload()
    key = IdempotencyKey.generate("test_unencodable", "t", data)
    with pytest.raises(ResultSerializationError, match="tags"):
        await manager.execute_idempotent(key, data)
    assert await manager.get_record(key) is None


async def test_expired_record_counts_as_absent_when_ttl_has_passed(store):
    later = utcnow() + dt.timedelta(days=2)
    data = payload()
    key = IdempotencyKey.generate("test_charge_card", "t", data)
    await IdempotencyManager(store=store).execute_idempotent(key, data)
    after_ttl = IdempotencyManager(store=store, clock=lambda: later)
    result = await after_ttl.execute_idempotent(key, data)
    assert not result.from_cache and result.data["run"] == 2


async def test_purge_deletes_expired_records_when_their_ttl_has_passed(store):
    class ShortLived(ChargeCard):
        operation_type = f"test_short_{uuid.uuid4().hex[:8]}"
        ttl = dt.timedelta(milliseconds=200)

    manager = IdempotencyManager(store=store)
    keys = []
    for _ in range(5):
        data = payload()
        keys.append(key := IdempotencyKey.generate(ShortLived.operation_type, "t", data))
        await manager.execute_idempotent(key, data)
    keep = payload()
    kept = IdempotencyKey.generate("test_charge_card", "t", keep)
    await manager.execute_idempotent(kept, keep)
    await asyncio.sleep(0.3)
    purged = await manager.purge_expired(batch_size=2)
    assert purged in (0, 5)  # Redis expires keys itself; SQL purges them in batches
    assert [await manager.get_record(k) for k in keys] == [None] * 5
    assert await manager.get_record(kept) is not None


async def test_unknown_operation_type_lists_the_known_ones_when_key_names_it(manager):
    key = IdempotencyKey.generate("no_such_operation", "t", {"a": 1})
    with pytest.raises(InvalidInputError, match="test_charge_card"):
        await manager.execute_idempotent(key, {"a": 1})


async def test_plain_key_needs_an_operation_and_a_tenant_when_given(manager):
    with pytest.raises(InvalidInputError, match="operation="):
        await manager.execute_idempotent("k1", {"a": 1}, {"tenant_id": "t"})
    with pytest.raises(InvalidInputError, match="tenant_id"):
        await manager.execute_idempotent("k1", {"a": 1}, operation=ChargeCard)


async def test_operation_must_match_the_key_when_passed_explicitly(manager):
    key = IdempotencyKey.generate("test_charge_card", "t", {"id": "x"})
    with pytest.raises(InvalidInputError, match="test_broken"):
        await manager.execute_idempotent(key, {"id": "x"}, operation=Broken())


def test_manager_needs_a_database_or_a_store_when_built():
    with pytest.raises(InvalidInputError, match="session_factory"):
        IdempotencyManager()


async def test_cancelled_holder_releases_its_claim_when_interrupted(manager):
    data = payload(delay=5)
    key = IdempotencyKey.generate("test_charge_card", "t", data)
    holder = asyncio.create_task(manager.execute_idempotent(key, data))
    await asyncio.sleep(0.1)
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder
    assert await manager.get_record(key) is None


async def test_live_holder_keeps_its_claim_when_it_runs_longer_than_the_lease(manager):
    class Slow(ChargeCard):
        operation_type = f"test_slow_{uuid.uuid4().hex[:8]}"
        lease_seconds = 0.3  # renewed every 0.1 s while the body runs for 1 s

    data = payload(delay=1.0)
    key = IdempotencyKey.generate(Slow.operation_type, "t", data)
    holder = asyncio.create_task(manager.execute_idempotent(key, data))
    await asyncio.sleep(0.7)  # well past one lease: only renewal keeps the claim
    with pytest.raises(OperationInProgressError):
        await manager.execute_idempotent(key, data)
    assert (await holder).success
    assert CALLS[data["id"]] == 1


async def test_short_lease_is_renewed_in_time_when_a_longer_one_is_held_already(manager):
    class Long(ChargeCard):
        operation_type = f"test_long_{uuid.uuid4().hex[:8]}"
        lease_seconds = 6.0  # first renewal due in 2 s

    class Short(ChargeCard):
        operation_type = f"test_short_{uuid.uuid4().hex[:8]}"
        lease_seconds = 0.3  # due every 0.1 s: must not wait for the long one's turn

    long_data, short_data = payload(delay=1.0), payload(delay=1.0)
    long_key = IdempotencyKey.generate(Long.operation_type, "t", long_data)
    short_key = IdempotencyKey.generate(Short.operation_type, "t", short_data)
    holders = [asyncio.create_task(manager.execute_idempotent(long_key, long_data))]
    await asyncio.sleep(0.05)
    holders.append(asyncio.create_task(manager.execute_idempotent(short_key, short_data)))
    await asyncio.sleep(0.7)  # past the short lease: only its renewals keep it
    for key, data in ((long_key, long_data), (short_key, short_data)):
        with pytest.raises(OperationInProgressError):
            await manager.execute_idempotent(key, data)
    assert all(result.success for result in await asyncio.gather(*holders))
    assert CALLS[long_data["id"]] == CALLS[short_data["id"]] == 1


async def test_claim_is_kept_when_one_renewal_fails_to_reach_the_store(store, caplog):
    class OneRenewalFails:
        """The store, except that its first renewal cannot reach the server."""

        def __init__(self) -> None:
            self.failed = False

        def __getattr__(self, name: str) -> object:
            return getattr(store, name)

        async def renew(self, record: StoredRecord, lease_expires_at: dt.datetime) -> bool:
            if not self.failed:
                self.failed = True
                raise PersistenceError("store unreachable", operation="idempotency.renew")
            return await store.renew(record, lease_expires_at)

    class Slow(ChargeCard):
        operation_type = f"test_slow_{uuid.uuid4().hex[:8]}"
        lease_seconds = 0.3  # renewals due every 0.1 s; the first one fails

    manager = IdempotencyManager(store=OneRenewalFails())
    data = payload(delay=1.0)
    key = IdempotencyKey.generate(Slow.operation_type, "t", data)
    holder = asyncio.create_task(manager.execute_idempotent(key, data))
    await asyncio.sleep(0.7)
    with pytest.raises(OperationInProgressError):
        await manager.execute_idempotent(key, data)
    assert (await holder).success
    assert "could not renew the idempotency lease" in caplog.text


@pytest.mark.parametrize("reuse", ["client-key", "plain-string"])
async def test_client_key_reused_for_another_operation_is_a_mismatch_when_payload_is_equal(
    manager, reuse
):
    data = payload()
    key = f"shared-{uuid.uuid4()}"
    charged = IdempotencyKey.from_client(
        key, operation_type=ChargeCard.operation_type, tenant_id="t", operation_data=data
    )
    first = await manager.execute_idempotent(charged, data)
    assert first.success and not first.from_cache
    with pytest.raises(IdempotencyPayloadMismatchError) as caught:
        if reuse == "client-key":
            refund = IdempotencyKey.from_client(
                key, operation_type=RefundCard.operation_type, tenant_id="t", operation_data=data
            )
            await manager.execute_idempotent(refund, data)
        else:
            await manager.execute_idempotent(key, data, {"tenant_id": "t"}, operation=RefundCard)
    assert caught.value.metadata["reason"] == "operation"
    assert caught.value.metadata["stored_operation"] == ChargeCard.operation_type
    assert caught.value.idempotency_key == key and "test_refund_card" in str(caught.value)
    assert CALLS[data["id"]] == 1  # the refund's body never ran; nothing was replayed
    again = await manager.execute_idempotent(charged, data)  # the owner still replays
    assert again.from_cache and again.data == first.data


async def test_payload_mismatch_says_payload_when_the_same_operation_reuses_a_key(manager):
    data = payload()
    key = f"client-{uuid.uuid4()}"
    context = {"tenant_id": "t"}
    await manager.execute_idempotent(key, data, context, operation=ChargeCard)
    with pytest.raises(IdempotencyPayloadMismatchError) as caught:
        await manager.execute_idempotent(
            key, {**data, "amount": "1"}, context, operation=ChargeCard
        )
    assert caught.value.metadata["reason"] == "payload"


@pytest.mark.parametrize("wait", [float("nan"), float("inf"), -1.0, float("-inf")])
async def test_wait_is_refused_when_it_is_not_a_finite_number_of_seconds(manager, store, wait):
    data = payload()
    key = IdempotencyKey.generate("test_charge_card", "t", data)
    now = utcnow()
    live = StoredRecord(  # another caller holds the key: a bad wait would spin or hang here
        tenant_id="t",
        key=key.key,
        operation_type=key.operation_type,
        payload_hash=key.payload_hash,
        status=RecordStatus.IN_PROGRESS,
        attempts=1,
        lease_owner="other-worker",
        lease_expires_at=now + dt.timedelta(seconds=60),
        expires_at=now + dt.timedelta(hours=1),
        created_at=now,
    )
    assert await store.insert_or_get(live) is None
    async with asyncio.timeout(5):
        with pytest.raises(InvalidInputError, match="wait") as caught:
            await manager.execute_idempotent(key, data, wait=wait)
    assert caught.value.field == "wait"
    assert CALLS[data["id"]] == 0


class _NowOnly:
    """A Clock with nothing but ``now()`` (not callable like the older ``clock=`` functions)."""

    def __init__(self, clock: ManualClock) -> None:
        self._clock = clock

    def now(self) -> dt.datetime:
        return self._clock.now()


async def test_dead_claim_is_taken_over_when_a_manual_clock_passes_its_lease(store):
    clock = ManualClock()
    manager = IdempotencyManager(store=store, clock=_NowOnly(clock))
    data = payload()
    key = IdempotencyKey.generate("test_charge_card", "t", data)
    crashed = StoredRecord(
        tenant_id="t",
        key=key.key,
        operation_type=key.operation_type,
        payload_hash=key.payload_hash,
        status=RecordStatus.IN_PROGRESS,
        attempts=1,
        lease_owner="crashed-worker",
        lease_expires_at=clock.now() + dt.timedelta(seconds=30),
        expires_at=clock.now() + dt.timedelta(hours=1),
        created_at=clock.now(),
    )
    assert await store.insert_or_get(crashed) is None
    with pytest.raises(OperationInProgressError):
        await manager.execute_idempotent(key, data)  # its lease still runs, by the clock
    clock.advance(seconds=31)  # no sleeping: the lease runs out because the clock says so
    result = await manager.execute_idempotent(key, data)
    assert result.success and not result.from_cache and result.claims == 2
    record = await manager.get_record(key)
    assert record is not None and record.completed_at == clock.now()
