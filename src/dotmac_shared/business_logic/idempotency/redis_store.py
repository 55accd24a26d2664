"""The Redis idempotency store: the same guarantees as the SQL store, in Lua scripts.

A record is a hash under ``<prefix><tenant>:<key>``; Redis expires it at the record's
``expires_at``. Each primitive is one script, so it is atomic: the claim inserts only if the
key is free (and otherwise returns the record in the same round trip); conditional writes
compare the fencing token ``(attempts, lease_owner, status)``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as redis_async
from redis.exceptions import RedisError

from dotmac_shared.business_logic.exceptions import PersistenceError
from dotmac_shared.business_logic.idempotency.records import RecordStatus, StoredRecord

__all__ = ["RedisIdempotencyStore"]

_INSERT_OR_GET = """
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('HGETALL', KEYS[1]) end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return false
"""
_TOKEN = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[2] then return 0 end
"""
_REPLACE = (
    _TOKEN
    + """
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""
)
_UPDATE = (
    _TOKEN
    + """
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if ARGV[1] ~= "0" then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
"""
)
_DELETE = _TOKEN + "\nredis.call('DEL', KEYS[1])\nreturn 1\n"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _time(value: dt.datetime | None) -> str:
    return "" if value is None else value.isoformat()


def _parse_time(value: str) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _fields(record: StoredRecord) -> list[str]:
    """The hash: the fencing token as one field Lua compares, the record as one JSON document.

    Few, short arguments: the client's per-argument encoding is most of a call's CPU.
    """
    doc = {
        "tenant_id": record.tenant_id,
        "key": record.key,
        "operation_type": record.operation_type,
        "payload_hash": record.payload_hash,
        "status": record.status.value,
        "attempts": record.attempts,
        "lease_owner": record.lease_owner,
        "lease_expires_at": _time(record.lease_expires_at),
        "expires_at": _time(record.expires_at),
        "created_at": _time(record.created_at),
        "completed_at": _time(record.completed_at),
        "result": record.result,
        "error": record.error,
    }
    return ["token", _token(record), "doc", json.dumps(doc, separators=(",", ":"))]


def _record(flat: Sequence[Any]) -> StoredRecord:
    raw = [_text(v) for v in flat]
    fields: Mapping[str, str] = dict(zip(raw[::2], raw[1::2], strict=True))
    doc = json.loads(fields["doc"])
    expires_at = _parse_time(doc["expires_at"])
    created_at = _parse_time(doc["created_at"])
    assert expires_at is not None and created_at is not None
    lease = _parse_time(fields.get("lease", "")) or _parse_time(doc["lease_expires_at"])
    return StoredRecord(
        tenant_id=doc["tenant_id"],
        key=doc["key"],
        operation_type=doc["operation_type"],
        payload_hash=doc["payload_hash"],
        status=RecordStatus(doc["status"]),
        attempts=int(doc["attempts"]),
        lease_owner=doc["lease_owner"],
        lease_expires_at=lease,
        expires_at=expires_at,
        created_at=created_at,
        completed_at=_parse_time(doc["completed_at"]),
        result=doc["result"],
        error=doc["error"],
    )


def _ttl_ms(record: StoredRecord) -> str:
    """Keep the hash at least until the record expires (and the lease runs out)."""
    until = max(record.expires_at, record.lease_expires_at or record.expires_at)
    return str(max(1, int((until - dt.datetime.now(dt.UTC)).total_seconds() * 1000)))


def _token(record: StoredRecord) -> str:
    return f"{record.attempts}|{record.lease_owner or ''}|{record.status.value}"


class RedisIdempotencyStore:
    """Idempotency records in Redis, shared by every process that uses the same server.

    Args:
        client: A ``redis.asyncio.Redis`` client.
        prefix: Namespace of the keys this store writes.
    """

    def __init__(self, client: redis_async.Redis, *, prefix: str = "dotmac:idempotency:") -> None:
        self._client = client
        self._prefix = prefix
        self._insert_or_get = client.register_script(_INSERT_OR_GET)
        self._replace = client.register_script(_REPLACE)
        self._update = client.register_script(_UPDATE)
        self._delete = client.register_script(_DELETE)

    def _name(self, tenant_id: str, key: str) -> str:
        # The tenant's length first: no (tenant, key) pair can spell another's name.
        return f"{self._prefix}{len(tenant_id)}:{tenant_id}:{key}"

    async def _call(self, action: str, coroutine: Any) -> Any:
        try:
            return await coroutine
        except RedisError as exc:
            raise PersistenceError(
                f"idempotency store could not {action}: {exc}",
                operation=f"idempotency.{action}",
            ) from exc

    async def insert_or_get(self, record: StoredRecord) -> StoredRecord | None:
        """Insert a claim if the key is free, else return the record that holds it."""
        name = self._name(record.tenant_id, record.key)
        found = await self._call(
            "claim", self._insert_or_get(keys=[name], args=[_ttl_ms(record), *_fields(record)])
        )
        return _record(found) if found else None

    async def replace(self, expected: StoredRecord, record: StoredRecord) -> bool:
        """Swap in ``record`` if the hash still carries ``expected``'s token."""
        name = self._name(record.tenant_id, record.key)
        args = [_ttl_ms(record), _token(expected), *_fields(record)]
        return bool(await self._call("take over", self._replace(keys=[name], args=args)))

    async def finish(self, record: StoredRecord) -> bool:
        """Store the outcome if the claim is still ``record``'s (status in progress)."""
        name = self._name(record.tenant_id, record.key)
        holder = record.evolve(status=RecordStatus.IN_PROGRESS)
        done = record.evolve(lease_expires_at=None)
        args = [_ttl_ms(done), _token(holder), *_fields(done)]
        # Rewrites the whole hash, so a renewed lease field does not outlive the claim.
        return bool(await self._call("store the result", self._replace(keys=[name], args=args)))

    async def renew(self, record: StoredRecord, lease_expires_at: dt.datetime) -> bool:
        """Extend the lease of a claim still held by ``record``'s holder."""
        name = self._name(record.tenant_id, record.key)
        renewed = record.evolve(lease_expires_at=lease_expires_at)
        # Only the lease moves: a field of its own, read in preference to the document's.
        args = [_ttl_ms(renewed), _token(record), "lease", _time(lease_expires_at)]
        return bool(await self._call("renew the lease", self._update(keys=[name], args=args)))

    async def release(self, record: StoredRecord) -> bool:
        """Delete the claim if ``record``'s holder still holds it."""
        name = self._name(record.tenant_id, record.key)
        args = ["0", _token(record)]
        return bool(await self._call("release the claim", self._delete(keys=[name], args=args)))

    async def get(self, tenant_id: str, key: str) -> StoredRecord | None:
        """Return the record under ``(tenant_id, key)``, or ``None``."""
        found = await self._call("read", self._client.hgetall(self._name(tenant_id, key)))
        if not found:
            return None
        flat: list[Any] = [item for pair in found.items() for item in pair]
        return _record(flat)

    async def purge_expired(self, now: dt.datetime, *, batch_size: int = 1000) -> int:
        """Nothing to do: Redis deletes each record when it expires. Returns 0."""
        return 0
