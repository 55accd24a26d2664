"""Per-tenant rate limits: a sliding window log in memory (one process) or in Redis (shared).

Both backends implement the :class:`RateLimiter` protocol. The Redis backend is loaded only
when :class:`RedisRateLimiter` is first used, so importing this package (or the policy
engine) loads no Redis client library.

Example:
    >>> import asyncio
    >>> from dotmac_shared.business_logic.ratelimit import InMemoryRateLimiter
    >>> limiter = InMemoryRateLimiter()
    >>> asyncio.run(limiter.hit("tenant123:api", limit=2, window_seconds=3600)).allowed
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dotmac_shared.business_logic._lazy import lazy_exports
from dotmac_shared.business_logic.ratelimit._limiter import (
    API_CALLS_LIMIT,
    InMemoryRateLimiter,
    RateLimiter,
    RateLimitResult,
)

if TYPE_CHECKING:
    from dotmac_shared.business_logic.ratelimit._redis import RedisRateLimiter

__all__ = [
    "API_CALLS_LIMIT",
    "InMemoryRateLimiter",
    "RateLimitResult",
    "RateLimiter",
    "RedisRateLimiter",
]

# Names whose module imports a Redis client library: loaded on first access (PEP 562).
_LAZY: dict[str, str] = {"RedisRateLimiter": "dotmac_shared.business_logic.ratelimit._redis"}

__getattr__, __dir__ = lazy_exports(_LAZY, globals())
