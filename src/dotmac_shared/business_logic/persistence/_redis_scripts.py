"""The Redis clients the library accepts, behind one small protocol, and Lua scripts by digest.

A store or limiter takes the user's own client, a ``redis.asyncio.Redis`` or a valkey-glide
``GlideClient`` (one multiplexed connection shared by every caller), and reaches it only
through :func:`commands_of`: a command, the atomic claim ``SET … NX PX … GET``, a Lua script,
and which exceptions the client raises. Nothing else of either client is used.

A script is sent by its SHA-1 (``EVALSHA``, a few dozen bytes) and in full (``EVAL``) only
when the server does not have it yet: a new server, a restart or ``SCRIPT FLUSH``. ``EVAL``
also caches it there, so the next call goes by digest again. valkey-glide does the same
itself in ``invoke_script``.
"""

from __future__ import annotations

import atexit
import hashlib
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, cast

import redis.asyncio as redis_async
from redis.exceptions import NoScriptError, RedisError, ResponseError

from dotmac_shared.business_logic.exceptions import InvalidInputError

if TYPE_CHECKING:
    from glide import GlideClient

__all__ = ["LuaScript", "RedisClient", "RedisCommands", "commands_of"]

#: The Redis clients the library's stores and limiters take.
RedisClient: TypeAlias = "redis_async.Redis | GlideClient"
Arg: TypeAlias = str | bytes | int


#: Each script's ``glide.Script`` by digest, made on first use on a glide client (glide keeps
#: the text while it lives, to send it again to a server that lacks it). A ``glide.Script``
#: frees itself when collected, which fails with a printed traceback once the interpreter
#: has begun tearing modules down: so they are freed at exit, before that.
_GLIDE_SCRIPTS: dict[str, Any] = {}


class LuaScript:
    """A Lua script, run as ``await commands.run(script, keys, args)``; returns its reply.

    Raises what the client raises (see :attr:`RedisCommands.errors`); the caller translates
    them at its own boundary.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    async def __call__(self, client: RedisClient, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run the script on ``keys`` with ``args`` on ``client``."""
        return await commands_of(client).run(self, keys, args)


class RedisCommands(Protocol):
    """What the library asks of a Redis client; :func:`commands_of` gives it for either."""

    #: What the client raises when Redis cannot be reached or answers with an error.
    errors: tuple[type[BaseException], ...]

    async def command(self, *args: Arg) -> Any:
        """Send one command; return its reply as the client gives it.

        Strings are bytes, integers ints and nil ``None`` on both clients; otherwise
        redis-py applies its reply callbacks (``PING`` gives ``True``) and glide gives a
        status reply (``OK``) as ``str``. A script's reply is not touched by either
        callback, but a status reply it returns is ``str`` on glide.
        """
        ...

    async def claim(self, name: str, value: str, ttl_ms: int) -> bytes | None:
        """``SET name value NX PX ttl_ms GET``: ``None`` once set, else the value holding it."""
        ...

    async def run(self, script: LuaScript, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        """Run ``script`` by digest, in full if the server lacks it."""
        ...

    def refused(self, error: BaseException) -> bool:
        """Whether ``error`` is Redis's error reply (not a lost connection or a timeout)."""
        ...


class _RedisPy:
    """redis-py's asyncio client: its pool checks a connection out for every command."""

    errors: tuple[type[BaseException], ...] = (RedisError, OSError)

    def __init__(self, client: redis_async.Redis) -> None:
        self._client = client
        # Bound once; redis-py leaves ``execute_command`` without type hints.
        self._execute: Callable[..., Awaitable[Any]] = client.execute_command

    async def command(self, *args: Arg) -> Any:
        return await self._execute(*args)

    async def claim(self, name: str, value: str, ttl_ms: int) -> bytes | None:
        found = await self._client.set(name, value, nx=True, px=ttl_ms, get=True)
        return cast("bytes | None", found)

    async def run(self, script: LuaScript, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        try:
            return await self._execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:  # a new, restarted or flushed server
            return await self._execute("EVAL", script.text, len(keys), *keys, *args)

    def refused(self, error: BaseException) -> bool:
        return isinstance(error, ResponseError)


def _encodable(args: Sequence[Arg]) -> list[str | bytes]:
    """The arguments as glide takes them: strings and bytes only."""
    return [str(arg) if isinstance(arg, int) else arg for arg in args]


class _Glide:
    """valkey-glide's client: every caller's command goes out on one multiplexed connection."""

    def __init__(self, client: GlideClient) -> None:
        import glide

        self._client = client
        self._glide = glide
        self.errors: tuple[type[BaseException], ...] = (glide.GlideError,)
        # A RequestError of none of these kinds is Redis's error reply to the command.
        self._not_replies: tuple[type[BaseException], ...] = (
            glide.TimeoutError,
            glide.ConnectionError,
            glide.ClosingError,
            glide.ConfigurationError,
        )

    async def command(self, *args: Arg) -> Any:
        return await self._client.custom_command(_encodable(args))

    async def claim(self, name: str, value: str, ttl_ms: int) -> bytes | None:
        found = await self._client.custom_command(
            ["SET", name, value, "NX", "PX", str(ttl_ms), "GET"]
        )
        return cast("bytes | None", found)

    async def run(self, script: LuaScript, keys: Sequence[str], args: Sequence[Arg]) -> Any:
        compiled = _GLIDE_SCRIPTS.get(script.sha)
        if compiled is None:
            if not _GLIDE_SCRIPTS:
                atexit.register(_GLIDE_SCRIPTS.clear)
            compiled = _GLIDE_SCRIPTS[script.sha] = self._glide.Script(script.text)  # type: ignore[no-untyped-call]
        return await self._client.invoke_script(compiled, list(keys), _encodable(args))

    def refused(self, error: BaseException) -> bool:
        return isinstance(error, self._glide.RequestError) and not isinstance(
            error, self._not_replies
        )


def commands_of(client: RedisClient) -> RedisCommands:
    """The :class:`RedisCommands` of a ``redis.asyncio.Redis`` or a glide ``GlideClient``.

    Raises:
        InvalidInputError: ``client`` is neither.
    """
    if isinstance(client, redis_async.Redis):
        return _RedisPy(client)
    # glide is an optional extra: a client of it can only exist if it is installed.
    glide = sys.modules.get("glide")
    if glide is not None and isinstance(client, glide.GlideClient):
        return _Glide(client)
    raise InvalidInputError(
        "a Redis client must be a redis.asyncio.Redis or a glide.GlideClient, "
        f"not {type(client).__name__}",
        field="client",
    )
