"""The multiplexed Redis connection: replies in order, errors as redis-py's, recovery.

Every test runs against the real test Redis (the ``redis`` fixture fails in CI, and skips
elsewhere, when it is unreachable) and uses keys of its own.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as redis_async
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.exceptions import (
    AuthenticationError,
    ConnectionError,
    NoScriptError,
    ResponseError,
    TimeoutError,
)

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.persistence import RedisConnection
from tests.support.services import REDIS_URL, fresh_redis_prefix, require


@pytest.fixture
async def connection(redis: redis_async.Redis) -> AsyncIterator[RedisConnection]:
    async with RedisConnection.from_url(REDIS_URL) as conn:
        yield conn


@pytest.fixture
async def key() -> AsyncIterator[str]:
    """A key of this test's own; it and the keys named after it are deleted afterwards."""
    async with fresh_redis_prefix() as prefix:
        yield f"{prefix}k"


async def test_replies_are_what_redis_sent_when_commands_succeed(connection, key):
    assert await connection.ping() is True
    assert await connection.get(key) is None
    assert await connection.set(key, "v1") is True
    assert await connection.set(key, "v2", nx=True) is None  # NX kept it from being set
    assert await connection.set(key, "v3", px=60_000, get=True) == b"v1"
    assert await connection.get(key) == b"v3"
    assert 0 < await connection.execute_command("PTTL", key) <= 60_000
    assert await connection.execute_command("INCRBY", f"{key}:n", 5) == 5
    assert await connection.execute_command("LRANGE", f"{key}:none", 0, -1) == []


async def test_error_reply_raises_response_error_when_a_command_fails(connection, key):
    await connection.set(key, "not a number")
    with pytest.raises(ResponseError, match="not an integer"):
        await connection.execute_command("INCR", key)
    assert await connection.get(key) == b"not a number"  # the connection goes on


async def test_unknown_script_raises_no_script_error_when_called_by_digest(connection):
    with pytest.raises(NoScriptError):
        await connection.execute_command("EVALSHA", "0" * 40, 0)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(st.binary(max_size=300), min_size=1, max_size=60))
async def test_each_caller_gets_its_own_reply_when_many_tasks_share_the_connection(
    connection, values
):
    # Every command is on the wire before any reply is read: the replies must be matched
    # to their commands by order alone, whatever bytes (CR, LF, empty) the values hold.
    replies = await asyncio.gather(*(connection.execute_command("ECHO", v) for v in values))
    assert replies == values


async def test_one_socket_is_opened_when_many_tasks_start_on_a_new_connection_at_once(redis):
    async with RedisConnection.from_url(REDIS_URL) as conn:
        ids = await asyncio.gather(*(conn.execute_command("CLIENT", "ID") for _ in range(20)))
    assert len(set(ids)) == 1


async def test_later_replies_stay_in_order_when_a_caller_gives_up_waiting(connection, key):
    blocked = asyncio.create_task(connection.execute_command("BLPOP", key, 0.3))
    await asyncio.sleep(0.05)
    blocked.cancel()  # its reply (nil, in 0.3 s) is still coming and must be dropped
    echoed = connection.execute_command("ECHO", "after")
    assert await asyncio.wait_for(echoed, 5) == b"after"
    with pytest.raises(asyncio.CancelledError):
        await blocked


async def test_timeout_fails_the_waiting_commands_and_reconnects_when_redis_does_not_answer(
    redis, key
):
    async with RedisConnection.from_url(REDIS_URL, timeout=0.2) as conn:
        stuck = asyncio.create_task(conn.execute_command("BLPOP", key, 2))  # no reply for 2 s
        behind = asyncio.create_task(conn.execute_command("ECHO", "behind"))
        with pytest.raises(TimeoutError, match="no reply"):
            await stuck
        with pytest.raises(ConnectionError, match="no reply in time"):
            await behind
        assert await conn.execute_command("ECHO", "again") == b"again"  # a new connection


async def test_waiting_commands_fail_and_the_next_reconnects_when_the_connection_is_killed(
    redis, connection, key
):
    client_id = await connection.execute_command("CLIENT", "ID")
    waiting = asyncio.create_task(connection.execute_command("BLPOP", key, 3))
    await asyncio.sleep(0.05)
    assert await redis.execute_command("CLIENT", "KILL", "ID", client_id) == 1
    with pytest.raises(ConnectionError, match="closed"):
        await asyncio.wait_for(waiting, 5)
    assert await connection.execute_command("CLIENT", "ID") != client_id
    assert await connection.ping() is True


async def test_database_of_the_url_is_selected_when_the_url_names_one(redis, key):
    async with RedisConnection.from_url(f"{REDIS_URL.rsplit('/', 1)[0]}/5") as conn:
        await conn.set(key, "in db 5")
    other = redis_async.Redis.from_url(f"{REDIS_URL.rsplit('/', 1)[0]}/5")
    try:
        assert await other.get(key) == b"in db 5"
        assert await redis.get(key) is None  # not in the test database
        await other.delete(key)
    finally:
        await other.aclose()


async def test_connect_raises_authentication_error_when_redis_refuses_the_password(redis):
    url = REDIS_URL.replace("redis://", "redis://:wrong-password@")
    async with RedisConnection.from_url(url) as conn:
        with pytest.raises(AuthenticationError, match="refused AUTH"):
            await conn.ping()


async def test_connect_raises_connection_error_naming_the_address_when_nothing_listens():
    async with RedisConnection(port=1, connect_timeout=2) as conn:
        with pytest.raises(ConnectionError, match="127.0.0.1:1"):
            await conn.ping()


@pytest.mark.parametrize(
    ("url", "options", "message"),
    [
        ("http://127.0.0.1", {}, "scheme"),
        ("redis://127.0.0.1?socket_timeout=3", {}, "socket_timeout"),
        ("redis://127.0.0.1", {"timeout": 0}, "timeout must be positive"),
        ("redis://127.0.0.1", {"connect_timeout": -1}, "connect_timeout must be positive"),
    ],
)
def test_bad_url_or_option_raises_invalid_input_when_the_connection_is_made(url, options, message):
    with pytest.raises(InvalidInputError, match=message):
        RedisConnection.from_url(url, **options)


async def test_large_values_arrive_whole_when_writes_outrun_the_socket(connection, key):
    values = [bytes([i]) * (2 * 1024 * 1024) for i in range(12)]  # 24 MiB at once
    stored = await asyncio.gather(*(connection.set(f"{key}:{i}", v) for i, v in enumerate(values)))
    assert stored == [True] * len(values)
    read = await asyncio.gather(*(connection.get(f"{key}:{i}") for i in range(len(values))))
    assert read == values


async def test_commands_wait_to_be_written_when_the_transport_asks_to_pause(connection):
    await connection.ping()
    protocol = connection._protocol  # asyncio calls these when the socket's buffer is full
    protocol.pause_writing()
    paused = asyncio.create_task(connection.execute_command("ECHO", "later"))
    await asyncio.sleep(0.05)
    assert not paused.done()
    protocol.resume_writing()
    assert await paused == b"later"

    protocol.pause_writing()
    lost = asyncio.create_task(connection.execute_command("ECHO", "never"))
    await asyncio.sleep(0.05)
    protocol.abort(ConnectionError("reset"))  # released, and refused instead of written
    with pytest.raises(ConnectionError, match="closed"):
        await asyncio.wait_for(lost, 1)


def test_use_on_another_event_loop_raises_when_connected_on_one():
    conn = RedisConnection.from_url(REDIS_URL)
    first = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(conn.ping()) is True
        with pytest.raises(RuntimeError, match="event loop it connected on"):
            asyncio.run(conn.ping())
    finally:
        first.run_until_complete(conn.aclose())
        first.close()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Path]:
    """A redis-server of this test's own, on a Unix socket, requiring user ``app``'s password."""
    binary = shutil.which("redis-server")
    if binary is None:
        require("redis-server (the binary)", FileNotFoundError("redis-server"))
    socket = tmp_path / "redis.sock"
    acl = tmp_path / "users.acl"
    acl.write_text("user default off\nuser app on >app-secret ~* &* +@all\n")
    server = subprocess.Popen(
        [str(binary), "--port", "0", "--unixsocket", str(socket), "--aclfile", str(acl)]
        + ["--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not socket.exists():
            assert server.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not open its socket"
            time.sleep(0.02)
        yield socket
    finally:
        server.terminate()
        server.wait(10)


async def test_user_password_and_database_are_sent_when_the_server_requires_them(private_redis):
    async with RedisConnection.from_url(f"unix://app:app-secret@{private_redis}?db=3") as conn:
        await conn.set("k", "v")
        assert await conn.execute_command("ACL", "WHOAMI") == b"app"
        assert b" db=3 " in await conn.execute_command("CLIENT", "INFO")
    async with RedisConnection(path=str(private_redis)) as anonymous:
        with pytest.raises(AuthenticationError, match="Authentication required"):
            await anonymous.get("k")  # NOAUTH, as redis-py maps it
    async with RedisConnection(path=str(private_redis), username="app", password="no") as wrong:
        with pytest.raises(AuthenticationError, match="refused AUTH"):
            await wrong.ping()
    bad_db = RedisConnection(path=str(private_redis), db=99, username="app", password="app-secret")
    async with bad_db:
        with pytest.raises(ConnectionError, match="refused SELECT 99"):
            await bad_db.ping()
