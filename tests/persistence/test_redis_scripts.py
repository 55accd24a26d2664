"""Lua scripts by digest, on both Redis clients, against the test Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import ResponseError

from dotmac_shared.business_logic.persistence.redis_scripts import LuaScript, RedisClient
from tests.support.services import REDIS_CLIENTS, fresh_redis_prefix, redis_client_of


@pytest.fixture(params=REDIS_CLIENTS)
async def client(request: pytest.FixtureRequest) -> AsyncIterator[RedisClient]:
    redis = redis_client_of(request.param)
    try:
        yield redis
    finally:
        await redis.aclose()


def fresh_script(body: str) -> LuaScript:
    """A script no server has seen: a unique comment changes its digest."""
    return LuaScript(f"-- {uuid.uuid4().hex}\n{body}")


async def test_script_is_sent_in_full_once_then_by_digest_when_the_server_lacks_it(client):
    script = fresh_script("return redis.call('SET', KEYS[1], ARGV[1])")
    assert await client.execute_command("SCRIPT", "EXISTS", script.sha) == [0]
    async with fresh_redis_prefix() as prefix:
        assert await script(client, [f"{prefix}a"], ["1"]) == b"OK"
        assert await client.execute_command("SCRIPT", "EXISTS", script.sha) == [1]
        assert await script(client, [f"{prefix}a"], [2]) == b"OK"
        assert await client.execute_command("GET", f"{prefix}a") == b"2"


async def test_script_error_reaches_the_caller_when_the_script_fails(client):
    script = fresh_script("return redis.error_reply('ERR refused by the script')")
    with pytest.raises(ResponseError, match="refused by the script"):
        await script(client, [], [])
