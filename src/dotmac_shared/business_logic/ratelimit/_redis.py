"""The Redis backend of the rate limiter: one Lua script checks and records a call atomically.

Loaded only when :class:`RedisRateLimiter` is first used, so that the in-memory limiter and
the policy engine never import a Redis client library.
"""

from __future__ import annotations

import uuid
from typing import Final

from dotmac_shared.business_logic.exceptions import PersistenceError
from dotmac_shared.business_logic.persistence._redis_scripts import (
    LuaScript,
    RedisClient,
    commands_of,
)
from dotmac_shared.business_logic.ratelimit._limiter import (
    API_CALLS_LIMIT,
    RateLimitResult,
    validate_limit,
)

__all__ = ["RedisRateLimiter"]


# KEYS[1] = the sorted set of call timestamps (microseconds since epoch, Redis clock)
# ARGV: limit, window (microseconds), cost, member prefix (unique per call), record (1/0)
# Returns {allowed (1/0), count after, retry_after (microseconds)}.
_SLIDING_WINDOW: Final = LuaScript("""
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local prefix = ARGV[4]
local record = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
if record == 0 then
  return {count < limit and 1 or 0, count, 0}
end
if count + cost <= limit then
  for i = 1, cost do
    redis.call('ZADD', key, now, prefix .. ':' .. i)
  end
  redis.call('PEXPIRE', key, math.ceil(window / 1000) + 1000)
  return {1, count + cost, 0}
end
local retry = -1
if cost <= limit then
  local oldest = redis.call('ZRANGE', key, count + cost - limit - 1, count + cost - limit - 1,
    'WITHSCORES')
  retry = math.max(tonumber(oldest[2]) + window - now, 0)
end
return {0, count, retry}
""")


def _unreachable(action: str, key: str, exc: BaseException) -> PersistenceError:
    return PersistenceError(
        f"rate limiter could not {action} {key!r}: {exc}", operation="rate_limit"
    )


class RedisRateLimiter:
    """A sliding window log per key in Redis, shared by every process using the same Redis.

    Args:
        client: A ``redis.asyncio.Redis`` or a valkey-glide ``GlideClient``. The caller
            closes it.
        prefix: Namespace of the keys this limiter writes.

    Each key is a sorted set of call timestamps; one Lua script trims the window, counts,
    and records the call atomically. Keys expire one window after their last call.
    """

    def __init__(self, client: RedisClient, *, prefix: str = "dotmac:ratelimit:") -> None:
        self._client = client
        self._redis = commands_of(client)
        self._prefix = prefix

    def redis_key(self, key: str) -> str:
        """Return the Redis key that holds ``key``'s window."""
        return f"{self._prefix}{key}"

    async def _run(
        self,
        key: str,
        *,
        limit: int,
        window_seconds: float,
        cost: int,
        record: bool,
        limit_name: str,
    ) -> RateLimitResult:
        window_us = max(int(window_seconds * 1_000_000), 1)
        try:
            raw = await self._redis.run(
                _SLIDING_WINDOW,
                [self.redis_key(key)],
                [limit, window_us, cost, uuid.uuid4().hex, 1 if record else 0],
            )
        except self._redis.errors as exc:
            raise _unreachable("count calls against", key, exc) from exc
        allowed, count, retry_us = (int(v) for v in raw)
        return RateLimitResult(
            allowed=bool(allowed),
            key=key,
            limit=limit_name,
            allowed_value=limit,
            current_value=count,
            remaining=max(limit - count, 0),
            window_seconds=float(window_seconds),
            retry_after=float("inf") if retry_us < 0 else retry_us / 1_000_000,
        )

    async def hit(
        self,
        key: str,
        *,
        limit: int,
        window_seconds: float,
        cost: int = 1,
        limit_name: str = API_CALLS_LIMIT,
    ) -> RateLimitResult:
        """Count ``cost`` calls against ``key`` if the window still has room; report either way."""
        validate_limit(limit, window_seconds, cost)
        return await self._run(
            key,
            limit=limit,
            window_seconds=window_seconds,
            cost=cost,
            record=True,
            limit_name=limit_name,
        )

    async def peek(
        self, key: str, *, limit: int, window_seconds: float, limit_name: str = API_CALLS_LIMIT
    ) -> RateLimitResult:
        """Report the window's state without counting anything."""
        validate_limit(limit, window_seconds, 1)
        return await self._run(
            key,
            limit=limit,
            window_seconds=window_seconds,
            cost=1,
            record=False,
            limit_name=limit_name,
        )

    async def reset(self, key: str) -> None:
        """Forget every call counted against ``key``."""
        try:
            await self._redis.command("DEL", self.redis_key(key))
        except self._redis.errors as exc:
            raise _unreachable("reset", key, exc) from exc
