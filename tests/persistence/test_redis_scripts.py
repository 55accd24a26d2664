"""Both Redis clients behind one protocol: commands, the claim, Lua scripts by digest, errors.

Every test runs on redis-py's client and on valkey-glide's, against the test Redis or, for a
stopped or restarted server, against a throwaway redis-server of the test's own.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.persistence._redis_scripts import (
    LuaScript,
    RedisClient,
    commands_of,
)
from tests.support.services import (
    REDIS_CLIENTS,
    REDIS_URL,
    fresh_redis_prefix,
    redis_client_of,
)
from tests.support.throwaway_redis import throwaway_redis

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=REDIS_CLIENTS)
async def client(request: pytest.FixtureRequest) -> AsyncIterator[RedisClient]:
    async with redis_client_of(request.param) as redis:
        yield redis


@pytest.fixture
async def key() -> AsyncIterator[str]:
    """A key of this test's own, deleted afterwards."""
    async with fresh_redis_prefix() as prefix:
        yield f"{prefix}k"


#: A status reply: bytes on redis-py, text on glide.
OK = {b"OK", "OK"}


def fresh_script(body: str) -> LuaScript:
    """A script no server has seen: a unique comment changes its digest."""
    return LuaScript(f"-- {uuid.uuid4().hex}\n{body}")


async def test_script_is_sent_in_full_once_then_by_digest_when_the_server_lacks_it(client, key):
    redis = commands_of(client)
    script = fresh_script("return redis.call('SET', KEYS[1], ARGV[1])")
    assert await redis.command("SCRIPT", "EXISTS", script.sha) == [0]
    assert await script(client, [key], ["1"]) in OK
    assert await redis.command("SCRIPT", "EXISTS", script.sha) == [1]
    assert await script(client, [key], [2]) in OK
    assert await redis.command("GET", key) == b"2"


async def test_script_error_is_a_refusal_when_the_script_fails(client):
    redis = commands_of(client)
    script = fresh_script("return redis.error_reply('ERR refused by the script')")
    with pytest.raises(redis.errors, match="refused by the script") as caught:
        await script(client, [], [])
    assert redis.refused(caught.value)


async def test_claim_sets_only_a_free_key_and_returns_the_holder_when_taken(client, key):
    redis = commands_of(client)
    assert await redis.claim(key, "first", 60_000) is None
    assert await redis.claim(key, "second", 60_000) == b"first"
    assert await redis.command("GET", key) == b"first"
    assert 0 < await redis.command("PTTL", key) <= 60_000


async def test_replies_keep_their_types_when_commands_succeed(client, key):
    redis = commands_of(client)
    assert await redis.command("GET", key) is None
    assert await redis.command("INCRBY", key, 5) == 5
    assert await redis.command("LRANGE", f"{key}:none", 0, -1) == []


@pytest.mark.parametrize("other", [object(), "redis://127.0.0.1:6379/0", None])
def test_commands_of_refuses_an_object_when_it_is_not_a_redis_client(other):
    with pytest.raises(InvalidInputError, match=r"redis\.asyncio\.Redis or a glide\.GlideClient"):
        commands_of(other)


@pytest.mark.reliability
@pytest.mark.timeout(30)
@pytest.mark.parametrize("client_kind", REDIS_CLIENTS)
async def test_lost_server_is_an_error_but_no_refusal_when_the_server_is_stopped(
    tmp_path: Path, client_kind: str
):
    with throwaway_redis(tmp_path) as server:
        async with redis_client_of(client_kind, server.url, timeout=2) as client:
            redis = commands_of(client)
            assert await redis.command("DBSIZE") == 0
            server.stop()
            with pytest.raises(redis.errors) as caught:
                await redis.command("DBSIZE")
            assert not redis.refused(caught.value)


@pytest.mark.reliability
@pytest.mark.timeout(30)
@pytest.mark.parametrize("client_kind", REDIS_CLIENTS)
async def test_script_is_sent_again_when_the_server_restarted_without_it(
    tmp_path: Path, client_kind: str
):
    script = fresh_script("return redis.call('INCR', KEYS[1])")
    with throwaway_redis(tmp_path) as server:  # keeps nothing across a restart
        async with redis_client_of(client_kind, server.url, timeout=2) as client:
            assert await script(client, ["n"], []) == 1
            server.stop()
            server.start()
            redis = commands_of(client)
            for _ in range(50):  # the client reconnects on its own; at most a few failures
                try:
                    assert await script(client, ["n"], []) == 1
                    break
                except redis.errors:
                    continue
            else:
                pytest.fail("the script never ran again after the restart")
            assert await redis.command("SCRIPT", "EXISTS", script.sha) == [1]


def test_glide_scripts_are_freed_before_teardown_when_the_process_exits():
    # A glide.Script collected while the interpreter tears modules down prints a traceback
    # ("Exception ignored in Script.__del__", seen at the end of pytest runs). atexit runs
    # its handlers last-registered first: the check registered before any script is made
    # runs after the library's own handler, and finds no script left to collect later.
    program = textwrap.dedent(
        f"""
        import asyncio, atexit, gc
        from glide import Script

        def count_scripts():
            print("scripts alive at exit:", sum(isinstance(o, Script) for o in gc.get_objects()))

        atexit.register(count_scripts)

        from dotmac_shared.business_logic.ratelimit import RedisRateLimiter
        from tests.support.services import glide_client

        async def main():
            client = await glide_client({REDIS_URL!r})
            limiter = RedisRateLimiter(client, prefix="dotmac:test:{uuid.uuid4().hex}:")
            await limiter.hit("t", limit=1, window_seconds=1)
            await client.close()

        asyncio.run(main())
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "scripts alive at exit: 0" in done.stdout
    assert "Exception ignored" not in done.stderr
