"""One multiplexed Redis connection: every caller's command goes out at once on one socket.

Redis answers the commands of a connection in the order it received them, so concurrent
callers can share one connection: each command is written as soon as it is issued and
queues a future, and each reply completes the oldest waiting future. redis-py's asyncio
client instead checks a connection out of its pool for every command, which costs Python
work per command and one socket per caller in flight (``benchmarks/`` measures both).

The wire format is packed and parsed by hiredis; URLs are parsed, and errors raised, as
redis-py does (``redis.exceptions``), so code written for a ``redis.asyncio.Redis`` handles
this connection's errors unchanged.
"""

from __future__ import annotations

import asyncio
import collections
import ssl as ssl_module
from types import TracebackType
from typing import Any, cast

import hiredis
from redis._parsers import BaseParser  # redis-py's map of error codes to its exceptions
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import AuthenticationError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dotmac_shared.business_logic.exceptions import InvalidInputError

__all__ = ["RedisConnection"]

_URL_OPTIONS = {"host", "port", "path", "db", "username", "password", "connection_class"}


def _pack(args: tuple[str | bytes | int | float, ...]) -> bytes:
    """One command in the wire format (hiredis' stub types the tuple as one element)."""
    packed: bytes = hiredis.pack_command(cast(Any, args))
    return packed


class _RespProtocol(asyncio.Protocol):
    """Writes packed commands and completes their futures in order as replies arrive.

    One watchdog timer, not one per command, enforces the reply timeout: it fires at the
    oldest unanswered command's deadline. Nothing is answered after that command until it
    is, so the connection is aborted: it gets ``TimeoutError``, the rest ``ConnectionError``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float | None, address: str):
        self.loop = loop
        self.closed = False
        self._timeout, self._address = timeout, address
        self._transport: asyncio.Transport | None = None
        # Error replies become redis-py's exception for their code (NOSCRIPT, WRONGPASS...).
        self._reader = hiredis.Reader(replyError=BaseParser.parse_error)
        # The commands written and not yet answered, oldest first, with their deadlines. A
        # caller that gave up (cancelled) leaves its future here, done: its reply still comes
        # and is dropped, so every later reply still meets its own command.
        self._waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self._watchdog: asyncio.TimerHandle | None = None
        self._writable: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def send(self, packed: bytes) -> asyncio.Future[Any]:
        """Write one packed command; the returned future gets its reply."""
        assert self._transport is not None
        waiter = self.loop.create_future()
        if self.closed:  # lost while the caller waited to write
            waiter.set_exception(RedisConnectionError("the Redis connection was closed"))
            return waiter
        if self._timeout is None:
            self._waiting.append((waiter, 0.0))
        else:
            deadline = self.loop.time() + self._timeout
            self._waiting.append((waiter, deadline))
            if self._watchdog is None:
                self._watchdog = self.loop.call_at(deadline, self._check_deadline)
        self._transport.write(packed)
        return waiter

    def _check_deadline(self) -> None:
        self._watchdog = None
        if not self._waiting:
            return
        waiter, deadline = self._waiting[0]
        if deadline > self.loop.time():  # answered in time; watch the oldest still waiting
            self._watchdog = self.loop.call_at(deadline, self._check_deadline)
            return
        if not waiter.done():
            waiter.set_exception(
                RedisTimeoutError(f"no reply from Redis at {self._address} in {self._timeout}s")
            )
        self.abort(RedisConnectionError("closed after a command got no reply in time"))

    async def writable(self) -> None:
        """Wait while the transport's buffer is over its high-water mark."""
        if self._writable is not None:
            await asyncio.shield(self._writable)

    def pause_writing(self) -> None:
        self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None:
            self._writable.set_result(None)
            self._writable = None

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not False:
                waiter, _ = self._waiting.popleft()
                if waiter.done():
                    continue
                if isinstance(reply, RedisError):
                    waiter.set_exception(reply)
                else:
                    waiter.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            # Garbage on the wire, or a reply nobody asked for: nothing after it can be
            # matched to its command any more.
            self.abort(RedisConnectionError(f"Redis sent an unreadable reply: {exc!r}"))

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc is not None else ""
        self._fail(RedisConnectionError(f"the Redis connection was closed{reason}"))

    def abort(self, error: Exception) -> None:
        """Close the socket and fail every command still waiting with ``error``."""
        self._fail(error)
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, error: Exception) -> None:
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiting:
            waiter, _ = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        self.resume_writing()


class RedisConnection:
    """A single Redis connection shared by every task of one event loop, pipelined.

    It connects on first use and again after the connection is lost. A command that gets
    no reply within ``timeout`` seconds raises ``redis.exceptions.TimeoutError`` and closes
    the connection (a half-open socket would otherwise hang every later command); the other
    commands then waiting fail with ``ConnectionError``, since whether they ran is unknown.
    A blocking command (``BLPOP``, ``XREAD BLOCK``...) holds up every command behind it:
    give those a connection of their own.

    Args:
        host, port: Where Redis listens on TCP.
        path: A Unix socket instead of ``host`` and ``port``.
        db: The database to ``SELECT``.
        username, password: Sent with ``AUTH`` on connecting.
        ssl: An SSL context, or ``True`` for the default one.
        timeout: Seconds to wait for a reply; ``None`` waits forever.
        connect_timeout: Seconds to wait to connect, authenticate and select.

    Example:
        >>> redis = RedisConnection.from_url("redis://127.0.0.1:6379/0")  # doctest: +SKIP
        >>> store = RedisIdempotencyStore(redis)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        ssl: ssl_module.SSLContext | bool | None = None,
        timeout: float | None = 5.0,
        connect_timeout: float = 5.0,
    ) -> None:
        for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
            if value is not None and not value > 0:
                raise InvalidInputError(f"{name} must be positive, got {value!r}", field=name)
        self._host, self._port, self._path, self._db = host, port, path, db
        self._username, self._password = username, password
        self._ssl: ssl_module.SSLContext | None = (
            ssl_module.create_default_context() if ssl is True else ssl or None
        )
        self._timeout, self._connect_timeout = timeout, connect_timeout
        self._protocol: _RespProtocol | None = None
        # Held while connecting; one per event loop, as an asyncio.Lock belongs to one.
        self._connecting: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    @classmethod
    def from_url(
        cls, url: str, *, timeout: float | None = 5.0, connect_timeout: float = 5.0
    ) -> RedisConnection:
        """A connection to ``redis://``, ``rediss://`` (TLS) or ``unix://`` ``url``.

        Raises:
            InvalidInputError: The URL is not one of those, or sets options (``?...``)
                other than ``db``.
        """
        try:
            options: dict[str, Any] = dict(parse_url(url))
        except ValueError as exc:
            raise InvalidInputError(f"not a Redis URL: {exc}", field="url") from exc
        unknown = sorted(set(options) - _URL_OPTIONS)
        if unknown:
            raise InvalidInputError(
                f"Redis URL option(s) {', '.join(unknown)} not supported by RedisConnection",
                field="url",
            )
        kind = options.pop("connection_class", None)
        if kind is SSLConnection:
            options["ssl"] = True
        elif kind is not None and kind is not UnixDomainSocketConnection:
            # The URL may carry a password: name the scheme only.
            scheme = url.partition("://")[0]
            raise InvalidInputError(f"unsupported Redis URL scheme {scheme!r}", field="url")
        return cls(**options, timeout=timeout, connect_timeout=connect_timeout)

    @property
    def _address(self) -> str:
        return self._path or f"{self._host}:{self._port}"

    async def execute_command(self, *args: str | bytes | int | float) -> Any:
        """Send one command and return its reply, raising its error reply.

        Raises:
            redis.exceptions.RedisError: Redis answered with an error: the class redis-py
                gives its code (``ResponseError``, ``NoScriptError``, ...).
            redis.exceptions.ConnectionError: Cannot connect, or the connection was lost
                before the reply came.
            redis.exceptions.TimeoutError: No reply within ``timeout``.
        """
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        elif protocol.loop is not asyncio.get_running_loop():
            raise RuntimeError("a RedisConnection is used on the event loop it connected on")
        await protocol.writable()
        return await protocol.send(_pack(args))

    async def get(self, name: str) -> bytes | None:
        """``GET name``: the value, or ``None``."""
        value: bytes | None = await self.execute_command("GET", name)
        return value

    async def set(
        self,
        name: str,
        value: str | bytes,
        *,
        nx: bool = False,
        px: int | None = None,
        get: bool = False,
    ) -> Any:
        """``SET`` as redis-py's ``Redis.set`` does for these options.

        Returns ``True`` once set (``None`` if ``nx`` kept it from being set), or with
        ``get`` the value it replaced (``None`` if there was none).
        """
        args: list[str | bytes | int] = ["SET", name, value]
        if nx:
            args.append("NX")
        if px is not None:
            args += ["PX", px]
        if get:
            args.append("GET")
        reply = await self.execute_command(*args)
        return reply if get or reply is None else reply == b"OK"

    async def ping(self) -> bool:
        """``PING``: ``True`` when Redis answers."""
        return bool(await self.execute_command("PING") == b"PONG")

    async def aclose(self) -> None:
        """Close the socket; commands still waiting fail with ``ConnectionError``.

        A later command connects again.
        """
        protocol, self._protocol = self._protocol, None
        if protocol is not None:  # even if marked closed: its socket may still be open
            protocol.abort(RedisConnectionError("the RedisConnection was closed"))

    async def __aenter__(self) -> RedisConnection:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _connect(self) -> _RespProtocol:
        loop = asyncio.get_running_loop()
        if self._connecting is None or self._connecting[0] is not loop:
            self._connecting = (loop, asyncio.Lock())
        async with self._connecting[1]:  # one connect for every caller who found it closed
            if self._protocol is not None and not self._protocol.closed:
                return self._protocol
            protocol = _RespProtocol(loop, self._timeout, self._address)
            connected = False
            try:
                async with asyncio.timeout(self._connect_timeout):
                    if self._path is not None:
                        await loop.create_unix_connection(lambda: protocol, self._path)
                    else:
                        await loop.create_connection(
                            lambda: protocol, self._host, self._port, ssl=self._ssl
                        )
                    await self._handshake(protocol)
                connected = True
            except (OSError, TimeoutError) as exc:
                raise RedisConnectionError(
                    f"cannot connect to Redis at {self._address}: {exc!r}"
                ) from exc
            except AuthenticationError as exc:
                raise AuthenticationError(f"Redis at {self._address} refused AUTH: {exc}") from exc
            except ResponseError as exc:
                raise RedisConnectionError(
                    f"Redis at {self._address} refused SELECT {self._db}: {exc}"
                ) from exc
            finally:
                if not connected:  # failed, timed out or cancelled: leave no socket open
                    protocol.abort(RedisConnectionError("connecting failed"))
            self._protocol = protocol
            return protocol

    async def _handshake(self, protocol: _RespProtocol) -> None:
        """AUTH and SELECT, pipelined; the first error reply is raised."""
        replies = []
        if self._password is not None:
            user = [self._username] if self._username else []
            replies.append(protocol.send(_pack(("AUTH", *user, self._password))))
        if self._db:
            replies.append(protocol.send(_pack(("SELECT", self._db))))
        await asyncio.gather(*replies)  # (gather also collects the other replies' errors)
