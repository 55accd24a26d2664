"""Sliding-window rate limiters: in memory (fake clock) and Redis (real, shared by processes)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis_async
from hypothesis import given, settings
from hypothesis import strategies as st

from dotmac_shared.business_logic.exceptions import InvalidInputError, PersistenceError
from dotmac_shared.business_logic.ratelimit import (
    InMemoryRateLimiter,
    RateLimiter,
    RedisRateLimiter,
)
from tests.support.services import (
    REDIS_CLIENTS,
    REDIS_URL,
    fresh_redis_prefix,
    redis_client_of,
)

ROOT = Path(__file__).resolve().parents[3]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=REDIS_CLIENTS)
async def redis_limiter(request: pytest.FixtureRequest) -> AsyncIterator[RedisRateLimiter]:
    async with fresh_redis_prefix() as prefix, redis_client_of(request.param) as client:
        yield RedisRateLimiter(client, prefix=prefix)


# --- in memory ----------------------------------------------------------------------------


async def test_calls_are_refused_with_limit_values_when_the_window_is_full() -> None:
    limiter = InMemoryRateLimiter(clock=FakeClock())
    results = [await limiter.hit("t1", limit=3, window_seconds=3600) for _ in range(4)]

    assert [r.allowed for r in results] == [True, True, True, False]
    refused = results[-1]
    assert (refused.limit, refused.allowed_value, refused.current_value) == (
        "max_api_calls_per_hour",
        3,
        3,
    )
    assert refused.remaining == 0
    assert refused.retry_after == pytest.approx(3600.0)
    assert "allowed 3, current 3" in refused.message
    assert isinstance(limiter, RateLimiter)


async def test_a_slot_reopens_when_the_oldest_call_leaves_the_window() -> None:
    clock = FakeClock()
    limiter = InMemoryRateLimiter(clock=clock)
    await limiter.hit("t1", limit=2, window_seconds=60)
    clock.now += 30
    await limiter.hit("t1", limit=2, window_seconds=60)
    refused = await limiter.hit("t1", limit=2, window_seconds=60)
    assert not refused.allowed and refused.retry_after == pytest.approx(30.0)

    clock.now += 30  # the first call is exactly one window old: out
    reopened = await limiter.hit("t1", limit=2, window_seconds=60)
    assert reopened.allowed and reopened.current_value == 2


async def test_refused_calls_are_not_counted_when_the_limit_is_reached() -> None:
    clock = FakeClock()
    limiter = InMemoryRateLimiter(clock=clock)
    await limiter.hit("t1", limit=1, window_seconds=10)
    for _ in range(5):
        clock.now += 1
        assert not (await limiter.hit("t1", limit=1, window_seconds=10)).allowed
    clock.now += 5  # 10 s after the only counted call
    assert (await limiter.hit("t1", limit=1, window_seconds=10)).allowed


async def test_keys_are_limited_independently_when_tenants_differ() -> None:
    limiter = InMemoryRateLimiter(clock=FakeClock())
    assert (await limiter.hit("a", limit=1, window_seconds=10)).allowed
    assert (await limiter.hit("b", limit=1, window_seconds=10)).allowed
    assert not (await limiter.hit("a", limit=1, window_seconds=10)).allowed


async def test_peek_and_reset_do_not_count_when_used_between_hits() -> None:
    limiter = InMemoryRateLimiter(clock=FakeClock())
    await limiter.hit("a", limit=2, window_seconds=10)
    peeked = await limiter.peek("a", limit=2, window_seconds=10)
    assert (peeked.current_value, peeked.remaining, peeked.allowed) == (1, 1, True)
    await limiter.reset("a")
    assert (await limiter.peek("a", limit=2, window_seconds=10)).current_value == 0


async def test_cost_is_refused_whole_when_it_does_not_fit() -> None:
    limiter = InMemoryRateLimiter(clock=FakeClock())
    assert (await limiter.hit("a", limit=5, window_seconds=10, cost=3)).current_value == 3
    refused = await limiter.hit("a", limit=5, window_seconds=10, cost=3)
    assert not refused.allowed and refused.current_value == 3
    assert (await limiter.hit("a", limit=5, window_seconds=10, cost=2)).current_value == 5
    never = await limiter.hit("b", limit=5, window_seconds=10, cost=6)
    assert not never.allowed and never.retry_after == float("inf")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": -1, "window_seconds": 1}, "limit"),
        ({"limit": 1, "window_seconds": 0}, "window_seconds"),
        ({"limit": 1, "window_seconds": 1, "cost": 0}, "cost"),
    ],
)
async def test_bad_arguments_are_refused_when_hitting(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        await InMemoryRateLimiter().hit("a", **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


async def test_exactly_limit_tasks_pass_when_many_race_on_one_loop() -> None:
    limiter = InMemoryRateLimiter()
    results = await asyncio.gather(
        *(limiter.hit("t", limit=10, window_seconds=60) for _ in range(50))
    )
    assert sum(r.allowed for r in results) == 10


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 5), st.integers(1, 3)), max_size=60),
    st.integers(0, 6),
    st.floats(1, 10),
)
def test_no_window_ever_holds_more_than_limit_when_calls_arrive_at_random(
    calls: list[tuple[float, int]], limit: int, window: float
) -> None:
    clock = FakeClock()
    limiter = InMemoryRateLimiter(clock=clock)
    allowed_at: list[float] = []

    async def drive() -> None:
        for gap, cost in calls:
            clock.now += gap
            result = await limiter.hit("k", limit=limit, window_seconds=window, cost=cost)
            if result.allowed:
                allowed_at.extend([clock.now] * cost)
            # The reported count is the number of recorded calls within the window.
            recent = [t for t in allowed_at if t > clock.now - window]
            assert result.current_value == len(recent)
            if result.allowed:
                assert result.current_value <= limit
            else:
                assert result.current_value + cost > limit

    asyncio.run(drive())
    for t in allowed_at:
        assert sum(1 for u in allowed_at if t - window < u <= t) <= limit


# --- Redis ---------------------------------------------------------------------------------


async def test_redis_refuses_with_limit_values_when_the_window_is_full(
    redis_limiter: RedisRateLimiter,
) -> None:
    results = [await redis_limiter.hit("t1", limit=3, window_seconds=3600) for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert [r.current_value for r in results] == [1, 2, 3, 3]
    assert results[-1].allowed_value == 3
    assert 3590 < results[-1].retry_after <= 3600
    assert (await redis_limiter.peek("t1", limit=3, window_seconds=3600)).current_value == 3
    await redis_limiter.reset("t1")
    assert (await redis_limiter.peek("t1", limit=3, window_seconds=3600)).current_value == 0


async def test_redis_window_slides_when_time_passes(redis_limiter: RedisRateLimiter) -> None:
    assert (await redis_limiter.hit("t", limit=1, window_seconds=0.3)).allowed
    assert not (await redis_limiter.hit("t", limit=1, window_seconds=0.3)).allowed
    await asyncio.sleep(0.35)
    assert (await redis_limiter.hit("t", limit=1, window_seconds=0.3)).allowed


async def test_redis_key_expires_when_idle_for_a_window(
    redis_limiter: RedisRateLimiter, redis: redis_async.Redis
) -> None:
    await redis_limiter.hit("t", limit=5, window_seconds=60)
    ttl = await redis.pttl(redis_limiter.redis_key("t"))
    assert 60_000 <= ttl <= 61_000


async def test_redis_allows_exactly_the_limit_when_tasks_race(
    redis_limiter: RedisRateLimiter,
) -> None:
    results = await asyncio.gather(
        *(redis_limiter.hit("t", limit=25, window_seconds=60) for _ in range(100))
    )
    assert sum(r.allowed for r in results) == 25


WORKER = textwrap.dedent(
    """
    import asyncio, sys, time
    import redis.asyncio as redis_async
    from dotmac_shared.business_logic.ratelimit import RedisRateLimiter

    async def main(url, prefix, go_key, n):
        client = redis_async.Redis.from_url(url)
        limiter = RedisRateLimiter(client, prefix=prefix)
        deadline = time.monotonic() + 30
        while not await client.exists(go_key):  # start together
            if time.monotonic() > deadline:
                raise SystemExit("no start signal")
            await asyncio.sleep(0.005)
        allowed = 0
        for _ in range(n):
            result = await limiter.hit("tenant123:api_calls", limit=50, window_seconds=3600)
            allowed += result.allowed
        await client.aclose()
        print(allowed)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
    """
)


async def test_two_processes_share_one_limit_when_using_the_same_redis(
    redis: redis_async.Redis,
) -> None:
    prefix = f"test:ratelimit:{uuid.uuid4().hex}:"
    go_key = f"{prefix}go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, REDIS_URL, prefix, go_key, "60"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        await asyncio.sleep(0.5)  # let both import and connect before the signal
        await redis.set(go_key, "1", ex=60)
        outputs = [await asyncio.to_thread(p.communicate, timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    allowed = [int(out.strip()) for out, _ in outputs]
    # 120 attempts against one limit of 50: exactly 50 pass in total, whoever got them.
    assert sum(allowed) == 50
    # Had each process its own limit, 100 would have passed.


@pytest.mark.parametrize("client_kind", REDIS_CLIENTS)
async def test_redis_limiter_raises_persistence_error_when_redis_is_unreachable(client_kind):
    url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    async with redis_client_of(client_kind, url, timeout=1) as client:
        limiter = RedisRateLimiter(client)
        with pytest.raises(PersistenceError, match="could not count calls against 't'"):
            await limiter.hit("t", limit=1, window_seconds=60)
        with pytest.raises(PersistenceError, match="could not reset 't'"):
            await limiter.reset("t")
