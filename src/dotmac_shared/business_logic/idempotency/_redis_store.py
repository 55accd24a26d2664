"""The Redis idempotency store: the same guarantees as the SQL store, one command each.

A record is one string under ``<prefix><len(tenant)>:<tenant>:<key>``: its fencing token
``attempts|lease_owner|status``, a newline, and the record as JSON (its times in
microseconds since the epoch). Redis expires it when the record expires (or when its lease
runs out, if later). The claim is the plain command ``SET … NX PX … GET``: it writes only if
the key is free and otherwise returns what holds it, atomically, in one round trip.
Conditional writes are Lua scripts that compare the token at the head of the stored value
with the one the caller last saw.

The client is the user's ``redis.asyncio.Redis`` or valkey-glide ``GlideClient``, reached
only through :func:`~dotmac_shared.business_logic.persistence._redis_scripts.commands_of`.
Whatever either raises (redis-py's ``RedisError`` tree or a socket's ``OSError``; glide's
``GlideError`` tree) leaves the store as a :class:`PersistenceError` with the original
chained: one translation, in ``_translated``.

A server that keeps nothing across a restart (no AOF, no RDB snapshots) forgets every record
when it restarts, and every retry after that runs its operation again. The store asks the
server once, on first use or in :meth:`RedisIdempotencyStore.check_persistence`, and logs a
warning if so.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any

from dotmac_shared.business_logic.clock import SYSTEM_CLOCK, Clock
from dotmac_shared.business_logic.exceptions import PersistenceError
from dotmac_shared.business_logic.idempotency._records import RecordStatus, StoredRecord
from dotmac_shared.business_logic.observability._log import get_logger
from dotmac_shared.business_logic.persistence._redis_scripts import (
    LuaScript,
    RedisClient,
    RedisCommands,
    commands_of,
)

__all__ = ["RedisIdempotencyStore"]

_log = get_logger(__name__)

# KEYS[1]: the record; ARGV[1]: the token the caller saw, with its newline. A stored token is
# always followed by a newline, so the prefix comparison matches whole tokens only.
_HELD = """
local stored = redis.call('GET', KEYS[1])
if not stored or string.sub(stored, 1, #ARGV[1]) ~= ARGV[1] then return 0 end
"""
# ARGV[2]: the new value; ARGV[3]: its time to live in milliseconds.
_REPLACE = LuaScript(_HELD + "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])\nreturn 1\n")
_DELETE = LuaScript(_HELD + "redis.call('DEL', KEYS[1])\nreturn 1\n")
_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def _micros(value: dt.datetime) -> int:
    """Microseconds since the epoch: exact, and a quarter of the cost of ``isoformat()``."""
    return (value - _EPOCH) // _MICROSECOND


def _moment(micros: int) -> dt.datetime:
    return _EPOCH + dt.timedelta(0, 0, micros)


def _token(record: StoredRecord, status: RecordStatus | None = None) -> str:
    """What a conditional write compares: changes with every claim and every outcome.

    ``status`` replaces the record's own (the holder's token of a finished record).
    """
    value = (status or record.status).value
    return f"{record.attempts}|{record.lease_owner or ''}|{value}\n"


def _value(record: StoredRecord) -> str:
    """The stored string: the token, then the record (tenant and key are in the name).

    Times are microseconds since the epoch; ``None`` stays ``null``.
    """
    lease, completed = record.lease_expires_at, record.completed_at
    doc = {
        "operation_type": record.operation_type,
        "payload_hash": record.payload_hash,
        "status": record.status.value,
        "attempts": record.attempts,
        "lease_owner": record.lease_owner,
        "lease_expires_at": None if lease is None else _micros(lease),
        "expires_at": _micros(record.expires_at),
        "created_at": _micros(record.created_at),
        "completed_at": None if completed is None else _micros(completed),
        "result": record.result,
        "error": record.error,
    }
    return _token(record) + _ENCODE(doc)


def _record(value: bytes | str, tenant_id: str, key: str) -> StoredRecord:
    """Read a stored string back; one this version did not write is a clear error."""
    text = value.decode() if isinstance(value, bytes) else value
    try:
        # The JSON holds no raw newline (json.dumps escapes them): the last one ends the token.
        doc = json.loads(text[text.rindex("\n") + 1 :])
        lease, completed = doc["lease_expires_at"], doc["completed_at"]
        return StoredRecord(
            tenant_id=tenant_id,
            key=key,
            operation_type=doc["operation_type"],
            payload_hash=doc["payload_hash"],
            status=RecordStatus(doc["status"]),
            attempts=int(doc["attempts"]),
            lease_owner=doc["lease_owner"],
            lease_expires_at=None if lease is None else _moment(lease),
            expires_at=_moment(doc["expires_at"]),
            created_at=_moment(doc["created_at"]),
            completed_at=None if completed is None else _moment(completed),
            result=doc["result"],
            error=doc["error"],
        )
    except (ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise PersistenceError(
            f"the idempotency record of key {key!r} (tenant {tenant_id!r}) is not in the "
            f"format this version writes ({type(exc).__name__}: {exc}); it expires with "
            "its TTL, or delete it",
            operation="idempotency.read",
        ) from exc


def _ttl_ms(record: StoredRecord, now: dt.datetime) -> int:
    """Keep the value at least until the record expires (and the lease runs out), from ``now``."""
    until = max(record.expires_at, record.lease_expires_at or record.expires_at)
    return max(1, int((until - now).total_seconds() * 1000))


def _store_error(action: str, exc: BaseException) -> PersistenceError:
    return PersistenceError(
        f"idempotency store could not {action}: {type(exc).__name__}: {exc}",
        operation=f"idempotency.{action}",
    )


@contextmanager
def _translated(redis: RedisCommands, action: str) -> Iterator[None]:
    """Raise any error of the client inside as a :class:`PersistenceError`."""
    try:
        yield
    except redis.errors as exc:
        raise _store_error(action, exc) from exc


def _config_value(reply: Any) -> str:
    """The value of a one-parameter ``CONFIG GET`` reply, as either client returns it.

    Both clients turn the reply into a mapping (RESP2 by a reply callback, RESP3 as sent);
    a flat ``[name, value]`` list is read too. An unknown parameter gives an empty reply: ``""``.
    """
    values = list(reply.values()) if isinstance(reply, dict) else list(reply)[1::2]
    if not values:
        return ""
    value = values[0]
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisIdempotencyStore:
    """Idempotency records in Redis, shared by every process that uses the same server.

    Args:
        client: A ``redis.asyncio.Redis``, or a valkey-glide ``GlideClient`` (one
            multiplexed connection for every caller: the faster choice with many calls in
            flight; ``benchmarks/bench_redis_clients.py``). The caller closes it.
        prefix: Namespace of the keys this store writes.
        clock: Source of time for the keys' TTLs, which run to the record's expiry (or its
            lease's end, if later) as the clock tells it; the manager's clock, in practice.

    Raises:
        PersistenceError: From every method, when Redis cannot be reached or fails; the
            client's error is ``__cause__``.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = "dotmac:idempotency:",
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._client = client
        self._redis = commands_of(client)
        self._prefix = prefix
        self._clock = clock
        # Whether the server's persistence was asked about (or is being asked about): once
        # per store, by the first call, so that the warning is logged once.
        self._persistence_checked = False

    async def check_persistence(self) -> bool | None:
        """Ask the server whether it keeps its data across a restart; warn when it does not.

        Without an append-only file (``appendonly no``) and without RDB snapshots (an empty
        ``save``), a restart of Redis forgets every record: a retry after it runs its
        operation again, and a holder's result cannot be stored. That is logged as a warning.
        Every store does this once by itself, on its first call.

        Returns:
            ``True`` when the server persists (AOF or RDB), ``False`` when it does not (the
            warning is logged), ``None`` when the server does not allow ``CONFIG GET``
            (ACLs, a renamed command, a managed service): logged at info level.

        Raises:
            PersistenceError: Redis cannot be reached.
        """
        self._persistence_checked = True
        try:
            with _translated(self._redis, "check persistence"):
                # Both at once: one round trip on a multiplexed client, which pipelines them.
                replies = await asyncio.gather(
                    self._redis.command("CONFIG", "GET", "appendonly"),
                    self._redis.command("CONFIG", "GET", "save"),
                )
        except PersistenceError as exc:
            if exc.__cause__ is not None and self._redis.refused(exc.__cause__):
                # NOPERM, or CONFIG renamed/disabled
                _log.info(
                    "cannot tell whether Redis keeps idempotency records across a restart: "
                    "CONFIG GET was refused (%s)",
                    exc.__cause__,
                )
                return None
            self._persistence_checked = False  # unreachable: ask again on the next call
            raise
        appendonly, save = (_config_value(reply) for reply in replies)
        if appendonly.strip().lower() == "yes" or save.strip():
            return True
        _log.warning(
            "Redis keeps no data across a restart (appendonly %s, save %r): a restart forgets "
            "every idempotency record under %r, and retries then run their operations again; "
            "turn on appendonly or RDB snapshots",
            appendonly or "no",
            save,
            self._prefix,
        )
        return False

    def _name(self, tenant_id: str, key: str) -> str:
        # The tenant's length first: no (tenant, key) pair can spell another's name.
        return f"{self._prefix}{len(tenant_id)}:{tenant_id}:{key}"

    async def _call(self, action: str, command: Awaitable[Any]) -> Any:
        """Await ``command``; a client or socket error becomes a :class:`PersistenceError`."""
        if not self._persistence_checked:
            try:
                await self.check_persistence()
            except PersistenceError as exc:
                # Not this call's failure: the command below reports its own, if any.
                _log.debug("could not check Redis persistence: %s", exc)
            except BaseException:  # cancelled: the command will never be awaited
                if isinstance(command, Coroutine):
                    command.close()
                raise
        # The same translation as ``_translated``, inline: this runs on every call.
        try:
            return await command
        except self._redis.errors as exc:
            raise _store_error(action, exc) from exc

    async def _swap(self, action: str, token: str, record: StoredRecord) -> bool:
        """Write ``record`` if the stored value still starts with ``token``."""
        name = self._name(record.tenant_id, record.key)
        ttl = _ttl_ms(record, self._clock.now())
        swapped = self._redis.run(_REPLACE, [name], [token, _value(record), ttl])
        return bool(await self._call(action, swapped))

    async def insert_or_get(self, record: StoredRecord) -> StoredRecord | None:
        """Insert a claim if the key is free, else return the record that holds it."""
        name = self._name(record.tenant_id, record.key)
        found = await self._call(
            "claim",
            self._redis.claim(name, _value(record), _ttl_ms(record, self._clock.now())),
        )
        return None if found is None else _record(found, record.tenant_id, record.key)

    async def replace(self, expected: StoredRecord, record: StoredRecord) -> bool:
        """Swap in ``record`` if the stored value still carries ``expected``'s token."""
        return await self._swap("take over", _token(expected), record)

    async def finish(self, record: StoredRecord) -> bool:
        """Store the outcome if the claim is still ``record``'s (status in progress)."""
        held = _token(record, RecordStatus.IN_PROGRESS)
        # A finished record holds no lease (the manager's come without one already).
        done = record if record.lease_expires_at is None else record.evolve(lease_expires_at=None)
        return await self._swap("store the result", held, done)

    async def renew(self, record: StoredRecord, lease_expires_at: dt.datetime) -> bool:
        """Extend the lease of a claim still held by ``record``'s holder."""
        renewed = record.evolve(lease_expires_at=lease_expires_at)
        return await self._swap("renew the lease", _token(record), renewed)

    async def release(self, record: StoredRecord) -> bool:
        """Delete the claim if ``record``'s holder still holds it."""
        name = self._name(record.tenant_id, record.key)
        deleted = self._redis.run(_DELETE, [name], [_token(record)])
        return bool(await self._call("release the claim", deleted))

    async def get(self, tenant_id: str, key: str) -> StoredRecord | None:
        """Return the record under ``(tenant_id, key)``, or ``None``."""
        found = await self._call("read", self._redis.command("GET", self._name(tenant_id, key)))
        return None if found is None else _record(found, tenant_id, key)

    async def purge_expired(self, now: dt.datetime, *, batch_size: int = 1000) -> int:
        """Nothing to do: Redis deletes each record when it expires. Returns 0."""
        return 0
