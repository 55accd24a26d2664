"""Per-tenant API rate limits: the ``RateLimiter`` protocol and the in-memory backend.

Both backends implement the same exact *sliding window log*: a call is allowed when fewer
than ``limit`` calls were allowed in the last ``window_seconds``. Refused calls are not
recorded, so a client hammering a closed limit does not push its own reopening further away.

* :class:`InMemoryRateLimiter` — one process; timestamps in a deque per key.
* :class:`~._redis.RedisRateLimiter` (loaded only when used) — several processes (and
  machines) share one limit. The check and the record happen in one Lua script, so two
  processes can never both take the last slot, and the script reads Redis's own clock, so
  processes with skewed clocks agree on the window.

Example:
    >>> import asyncio
    >>> limiter = InMemoryRateLimiter()
    >>> result = asyncio.run(limiter.hit("tenant123:api", limit=2, window_seconds=3600))
    >>> result.allowed, result.current_value, result.allowed_value
    (True, 1, 2)
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from dotmac_shared.business_logic.exceptions import InvalidInputError

__all__ = [
    "API_CALLS_LIMIT",
    "InMemoryRateLimiter",
    "RateLimitResult",
    "RateLimiter",
    "validate_limit",
]

#: Name of the license limit that sizes the API rate limiter.
API_CALLS_LIMIT: Final = "max_api_calls_per_hour"


@dataclass(frozen=True, slots=True)
class RateLimitResult:
    """The answer to one rate-limited call.

    Attributes:
        allowed: Whether the call may proceed (it was counted if so).
        key: The limited key, e.g. ``"tenant123:api_calls"``.
        limit: Which limit applied, e.g. ``"max_api_calls_per_hour"``.
        allowed_value: How many calls the window allows.
        current_value: Calls counted in the window (including this one if it was allowed).
        remaining: Calls still allowed in the window right now.
        window_seconds: Length of the sliding window.
        retry_after: Seconds until a refused call could succeed (0.0 when allowed).
    """

    allowed: bool
    key: str
    limit: str
    allowed_value: int
    current_value: int
    remaining: int
    window_seconds: float
    retry_after: float

    @property
    def exceeded(self) -> bool:
        """Whether the call was refused because the limit is used up."""
        return not self.allowed

    @property
    def message(self) -> str:
        """A business-language summary naming the limit, allowed and current values."""
        if self.allowed:
            return f"{self.limit}: {self.current_value} of {self.allowed_value} used"
        return (
            f"{self.limit} exceeded: allowed {self.allowed_value}, current {self.current_value};"
            f" retry after {self.retry_after:.1f}s"
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-safe dict; ``retry_after`` is ``None`` when the call can never fit."""
        return {
            "allowed": self.allowed,
            "key": self.key,
            "limit": self.limit,
            "allowed_value": self.allowed_value,
            "current_value": self.current_value,
            "remaining": self.remaining,
            "window_seconds": self.window_seconds,
            # JSON has no infinity: a cost above the limit never fits, said as null.
            "retry_after": None if math.isinf(self.retry_after) else self.retry_after,
            "message": self.message,
        }


@runtime_checkable
class RateLimiter(Protocol):
    """A sliding-window rate limiter keyed by an arbitrary string (usually tenant + purpose)."""

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
        ...

    async def peek(
        self, key: str, *, limit: int, window_seconds: float, limit_name: str = API_CALLS_LIMIT
    ) -> RateLimitResult:
        """Report the window's state without counting anything."""
        ...

    async def reset(self, key: str) -> None:
        """Forget every call counted against ``key``."""
        ...


def validate_limit(limit: int, window_seconds: float, cost: int) -> None:
    """Refuse a negative limit, a non-positive window or a cost below one.

    Raises:
        InvalidInputError: Names the offending argument.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise InvalidInputError(f"limit must be a non-negative int, got {limit!r}", field="limit")
    if not window_seconds > 0:
        raise InvalidInputError(
            f"window_seconds must be positive, got {window_seconds!r}", field="window_seconds"
        )
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 1:
        raise InvalidInputError(f"cost must be a positive int, got {cost!r}", field="cost")


class InMemoryRateLimiter:
    """A sliding window log per key, for one process (tests, single-node deployments).

    Args:
        clock: Seconds as a float, monotonic; injectable for tests.

    The check-and-record runs without an ``await`` in between, so concurrent tasks on one
    event loop cannot both take the last slot.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}

    def _window(self, key: str, now: float, window_seconds: float) -> deque[float]:
        calls = self._calls.setdefault(key, deque())
        horizon = now - window_seconds
        while calls and calls[0] <= horizon:
            calls.popleft()
        return calls

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
        now = self._clock()
        calls = self._window(key, now, window_seconds)
        allowed = len(calls) + cost <= limit
        if allowed:
            calls.extend([now] * cost)
        retry_after = 0.0
        if not allowed:
            retry_after = _retry_after(calls, cost, limit, now, window_seconds)
        count = len(calls)
        return RateLimitResult(
            allowed=allowed,
            key=key,
            limit=limit_name,
            allowed_value=limit,
            current_value=count,
            remaining=max(limit - count, 0),
            window_seconds=float(window_seconds),
            retry_after=retry_after,
        )

    async def peek(
        self, key: str, *, limit: int, window_seconds: float, limit_name: str = API_CALLS_LIMIT
    ) -> RateLimitResult:
        """Report the window's state without counting anything."""
        validate_limit(limit, window_seconds, 1)
        now = self._clock()
        count = len(self._window(key, now, window_seconds))
        return RateLimitResult(
            allowed=count < limit,
            key=key,
            limit=limit_name,
            allowed_value=limit,
            current_value=count,
            remaining=max(limit - count, 0),
            window_seconds=float(window_seconds),
            retry_after=0.0,
        )

    async def reset(self, key: str) -> None:
        """Forget every call counted against ``key``."""
        self._calls.pop(key, None)


def _retry_after(
    calls: deque[float], cost: int, limit: int, now: float, window_seconds: float
) -> float:
    """Seconds until enough old calls leave the window for ``cost`` more to fit."""
    if cost > limit:
        return float("inf")  # can never fit
    # The window must shed (count + cost - limit) of its oldest calls.
    index = len(calls) + cost - limit - 1
    return max(calls[index] + window_seconds - now, 0.0)
