"""Lua scripts run by digest on either Redis client the library accepts.

A script is sent by its SHA-1 (``EVALSHA``, a few dozen bytes) and in full (``EVAL``) only
when the server does not have it yet: a new server, a restart or ``SCRIPT FLUSH``. ``EVAL``
also caches it there, so the next call goes by digest again. Both clients have
``execute_command``, so one code path serves :class:`RedisConnection` and redis-py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, TypeAlias

import redis.asyncio as redis_async
from redis.exceptions import NoScriptError

from dotmac_shared.business_logic.persistence.redis_connection import RedisConnection

__all__ = ["LuaScript", "RedisClient"]

#: The Redis clients the library's stores and limiters take.
RedisClient: TypeAlias = RedisConnection | redis_async.Redis


class LuaScript:
    """A Lua script, called as ``await script(client, keys, args)``; returns its reply.

    Raises what the client raises (``redis.exceptions.RedisError`` subclasses); the caller
    translates them at its own boundary.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    async def __call__(
        self, client: RedisClient, keys: Sequence[str], args: Sequence[str | int]
    ) -> Any:
        """Run the script on ``keys`` with ``args``: by digest, in full if the server lacks it."""
        try:
            return await client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:  # a new, restarted or flushed server
            return await client.execute_command("EVAL", self.text, len(keys), *keys, *args)
