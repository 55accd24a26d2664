"""What only the Redis store has: its stored string, the token comparison of its scripts, TTLs
that run on the store's clock, and the warning about a server that keeps nothing on restart.

The store's behaviour is the shared suite's (``test_manager.py`` runs it on Redis too).
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.exceptions import PersistenceError
from dotmac_shared.business_logic.idempotency import (
    RecordStatus,
    RedisIdempotencyStore,
    StoredRecord,
)
from dotmac_shared.business_logic.idempotency._redis_store import _record, _value
from dotmac_shared.business_logic.persistence._redis_scripts import commands_of
from tests.support.services import REDIS_CLIENTS, fresh_redis_store, redis_client_of
from tests.support.throwaway_redis import throwaway_redis

# Records are written relative to today (the store's clock): a fixed date would expire.
CLOCK = ManualClock()
NOW = CLOCK.now()

# Lease owners are the manager's uuid hex strings; any text without a newline works.
owners = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"), min_size=1, max_size=12
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def claim(owner: str, *, attempts: int = 1, key: str = "k") -> StoredRecord:
    return StoredRecord(
        tenant_id="t",
        key=key,
        operation_type="op",
        payload_hash="h",
        status=RecordStatus.IN_PROGRESS,
        attempts=attempts,
        lease_owner=owner,
        lease_expires_at=NOW + dt.timedelta(days=1),
        expires_at=NOW + dt.timedelta(days=2),
        created_at=NOW,
    )


@pytest.fixture(params=REDIS_CLIENTS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RedisIdempotencyStore]:
    async with fresh_redis_store(request.param) as redis_store:
        yield RedisIdempotencyStore(redis_store._client, prefix=redis_store._prefix, clock=CLOCK)


# Any aware time, to the microsecond: the store writes times as integer microseconds.
moments = st.datetimes(timezones=st.just(dt.UTC))


@given(
    owner=owners,
    result=json_values,
    error=st.none() | st.dictionaries(st.text(), st.text()),
    times=st.tuples(moments, moments, moments, st.none() | moments),
)
def test_record_reads_back_as_written_when_values_are_arbitrary(owner, result, error, times):
    expires_at, created_at, completed_at, lease_expires_at = times
    done = claim(owner).evolve(
        status=RecordStatus.COMPLETED,
        result=result,
        error=error,
        expires_at=expires_at,
        created_at=created_at,
        completed_at=completed_at,
        lease_expires_at=lease_expires_at,
    )
    assert _record(_value(done).encode(), "t", "k") == done


@pytest.mark.parametrize(
    "stored",
    [
        # An earlier version's record: times in ISO 8601.
        '1|w1|in_progress\n{"operation_type":"op","payload_hash":"h","status":"in_progress",'
        '"attempts":1,"lease_owner":"w1","lease_expires_at":"2026-11-26T12:00:00+00:00",'
        '"expires_at":"2026-11-27T12:00:00+00:00","created_at":"2026-11-25T12:00:00+00:00",'
        '"completed_at":null,"result":null,"error":null}',
        "not a record",
        '1|w1|in_progress\n{"status":"in_progress"}',
    ],
)
async def test_reading_a_record_in_another_format_is_a_persistence_error_when_found(store, stored):
    key = uuid.uuid4().hex
    await commands_of(store._client).command("SET", store._name("t", key), stored)
    with pytest.raises(PersistenceError, match=f"record of key '{key}'.*not in the format"):
        await store.get("t", key)
    with pytest.raises(PersistenceError, match="not in the format"):
        await store.insert_or_get(claim("w2", key=key))


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(stored=owners, seen=owners, attempts=st.sampled_from([(1, 1), (1, 2), (12, 1)]))
# A token that only starts like the stored one must not match (hence the newline after it).
@example(stored="a|in_progress|b", seen="a", attempts=(1, 1))
async def test_conditional_write_lands_only_when_the_token_seen_is_the_one_stored(
    store, stored, seen, attempts
):
    key = uuid.uuid4().hex
    holder = claim(stored, attempts=attempts[0], key=key)
    assert await store.insert_or_get(holder) is None
    expected = claim(seen, attempts=attempts[1], key=key)
    same = (stored, attempts[0]) == (seen, attempts[1])
    assert await store.renew(expected, NOW + dt.timedelta(days=3)) is same
    assert await store.release(expected) is same
    assert (await store.get("t", key) is None) is same


async def test_ttl_runs_from_the_store_clock_when_it_is_not_the_wall_clock(store):
    # A clock a month behind the wall: a TTL from the wall would expire the record at once.
    clock = ManualClock(NOW - dt.timedelta(days=30))
    behind = RedisIdempotencyStore(store._client, prefix=store._prefix, clock=clock)
    key = uuid.uuid4().hex
    held = claim("w1", key=key).evolve(
        lease_expires_at=clock.now() + dt.timedelta(seconds=30),
        expires_at=clock.now() + dt.timedelta(hours=1),
        created_at=clock.now(),
    )
    assert await behind.insert_or_get(held) is None
    ttl_ms = await commands_of(store._client).command("PTTL", behind._name("t", key))
    assert 3_590_000 < ttl_ms <= 3_600_000
    clock.advance(minutes=30)  # renewed half an hour later by the clock: 30 minutes left
    assert await behind.renew(held, clock.now() + dt.timedelta(seconds=30))
    ttl_ms = await commands_of(store._client).command("PTTL", behind._name("t", key))
    assert 1_790_000 < ttl_ms <= 1_800_000


@pytest.mark.parametrize("client_kind", REDIS_CLIENTS)
@pytest.mark.parametrize(
    ("persistence", "warned"), [("none", True), ("aof", False), ("rdb", False)]
)
async def test_store_warns_once_when_the_server_keeps_nothing_across_a_restart(
    tmp_path: Path, caplog, client_kind, persistence, warned
):
    with throwaway_redis(tmp_path, persistence=persistence) as server:
        async with redis_client_of(client_kind, server.url) as client:
            store = RedisIdempotencyStore(client)
            with caplog.at_level(logging.WARNING):
                for n in range(3):  # the first call asks; the others do not ask again
                    assert await store.insert_or_get(claim("w", key=f"k{n}")) is None
            warnings = [r for r in caplog.records if "keeps no data across a restart" in r.message]
            assert len(warnings) == (1 if warned else 0)
            assert await store.check_persistence() is (not warned)


@pytest.mark.parametrize("client_kind", REDIS_CLIENTS)
async def test_store_says_so_and_carries_on_when_config_is_not_permitted(
    tmp_path: Path, caplog, client_kind
):
    renamed = ["--rename-command", "CONFIG", ""]
    with throwaway_redis(tmp_path, extra_args=renamed) as server:
        async with redis_client_of(client_kind, server.url) as client:
            store = RedisIdempotencyStore(client)
            with caplog.at_level(logging.INFO):
                assert await store.insert_or_get(claim("w")) is None
                assert (await store.get("t", "k")) == claim("w")
            assert "CONFIG GET was refused" in caplog.text
            assert "keeps no data" not in caplog.text
            assert await store.check_persistence() is None
