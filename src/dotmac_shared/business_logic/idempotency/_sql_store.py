"""The SQL idempotency store: one code path for SQLite and PostgreSQL.

Every primitive is a single statement on an AUTOCOMMIT connection: the primary key
``(tenant_id, idempotency_key)`` makes ``INSERT ... ON CONFLICT DO NOTHING`` the atomic claim,
and conditional ``UPDATE``/``DELETE`` statements carry the fencing token. A replay costs one
``SELECT`` round trip.

Whatever the drivers or the network raise (SQLAlchemy's errors, asyncpg's ``PostgresError``,
``InterfaceError`` and ``InternalClientError``, ``sqlite3`` errors, a refused or reset
socket) leaves the store as a :class:`PersistenceError` naming the action, with the
original chained as ``__cause__``: ``persistence.driver.persistence_errors``, the one
translation every SQL store uses.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

from sqlalchemy import Table, and_, bindparam, delete, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.clock import SYSTEM_CLOCK, Clock
from dotmac_shared.business_logic.exceptions import PersistenceError
from dotmac_shared.business_logic.idempotency._records import RecordStatus, StoredRecord
from dotmac_shared.business_logic.persistence._driver import CompiledSelect, persistence_errors
from dotmac_shared.business_logic.persistence._session import autocommit, engine_of
from dotmac_shared.business_logic.persistence.models import IdempotencyRecord

__all__ = ["SqlIdempotencyStore"]

_T = cast(Table, IdempotencyRecord.__table__)
_C = _T.c


def _row_to_record(row: Mapping[Any, Any]) -> StoredRecord:
    return StoredRecord(
        tenant_id=row["tenant_id"],
        key=row["idempotency_key"],
        operation_type=row["operation_type"],
        payload_hash=row["payload_hash"],
        status=RecordStatus(row["status"]),
        attempts=row["attempts"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        result=row["result"],
        error=row["error"],
        completed_at=row["completed_at"],
    )


def _record_to_row(record: StoredRecord, now: dt.datetime) -> dict[str, Any]:
    return {
        "tenant_id": record.tenant_id,
        "idempotency_key": record.key,
        "operation_type": record.operation_type,
        "payload_hash": record.payload_hash,
        "status": record.status.value,
        "attempts": record.attempts,
        "lease_owner": record.lease_owner,
        "lease_expires_at": record.lease_expires_at,
        "expires_at": record.expires_at,
        "created_at": record.created_at,
        "updated_at": now,
        "result": record.result,
        "error": record.error,
        "completed_at": record.completed_at,
    }


# Statements are built once with bind parameters: the hot path only binds values, so
# SQLAlchemy's compiled cache is hit and no expression objects are made per call.
_KEY = and_(_C.tenant_id == bindparam("w_tenant"), _C.idempotency_key == bindparam("w_key"))
_TOKEN = and_(
    _KEY,
    _C.attempts == bindparam("w_attempts"),
    _C.lease_owner == bindparam("w_owner"),
    _C.status == bindparam("w_status"),
)
_SELECT = select(_T).where(_KEY)
_UPDATE_HELD = update(_T).where(_TOKEN)  # the SET columns are the keys of the bound values
_RELEASE = delete(_T).where(_TOKEN)


def _where(record: StoredRecord) -> dict[str, Any]:
    """Bind values of the fencing condition: the row is still the one ``record`` claimed."""
    return {
        "w_tenant": record.tenant_id,
        "w_key": record.key,
        "w_attempts": record.attempts,
        "w_owner": record.lease_owner,
        "w_status": record.status.value,
    }


class SqlIdempotencyStore:
    """Idempotency records in the ``dotmac_idempotency_records`` table.

    Args:
        session_factory: The spec's session factory (or an ``AsyncEngine``); its schema
            must be migrated (``create_session_factory`` does it).
        clock: Source of the ``updated_at`` times it writes (the manager passes its own).

    Raises:
        PersistenceError: From every method, when the database cannot be reached or fails;
            the driver's or the network's error is ``__cause__``.
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession] | AsyncEngine,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._clock = clock
        engine = (
            session_factory
            if isinstance(session_factory, AsyncEngine)
            else engine_of(session_factory)
        )
        self._engine = autocommit(engine)
        self._select = CompiledSelect(engine, _SELECT)
        dialect = engine.dialect.name
        if dialect not in {"postgresql", "sqlite"}:
            raise PersistenceError(f"unsupported database dialect {dialect!r}")
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self._claim = insert(_T).on_conflict_do_nothing(
            index_elements=[_C.tenant_id, _C.idempotency_key]
        )

    @asynccontextmanager
    async def _connection(self, action: str) -> AsyncIterator[AsyncConnection]:
        with persistence_errors(f"idempotency.{action}", self._engine.url):
            async with self._engine.connect() as conn:
                yield conn

    async def get(self, tenant_id: str, key: str) -> StoredRecord | None:
        """Return the record under ``(tenant_id, key)``, expired or not."""
        # The replay path: one SELECT on the driver connection (see persistence.driver).
        with persistence_errors("idempotency.read", self._engine.url):
            rows = await self._select.all(w_tenant=tenant_id, w_key=key)
        return _row_to_record(rows[0]) if rows else None

    async def insert_or_get(self, record: StoredRecord) -> StoredRecord | None:
        """Insert a claim if the key is free, else return the record that holds it."""
        row = _record_to_row(record, self._clock.now())
        for _ in range(5):
            # Read first: a replay (the common case under retries) is one round trip. The
            # INSERT is the atomic claim; if a racer inserted in between, read its row.
            existing = await self.get(record.tenant_id, record.key)
            if existing is not None:
                return existing
            async with self._connection("claim") as conn:
                if (await conn.execute(self._claim, row)).rowcount == 1:
                    return None
        raise PersistenceError(
            "idempotency key kept appearing and disappearing; giving up the claim",
            operation="idempotency.claim",
            resource_id=record.key,
        )

    async def replace(self, expected: StoredRecord, record: StoredRecord) -> bool:
        """Swap in ``record`` if the row still carries ``expected``'s token."""
        values = _record_to_row(record, self._clock.now())
        del values["tenant_id"], values["idempotency_key"]
        async with self._connection("take over") as conn:
            result = await conn.execute(_UPDATE_HELD, {**values, **_where(expected)})
            return result.rowcount == 1

    async def finish(self, record: StoredRecord) -> bool:
        """Store the outcome if the claim is still ``record``'s (status in progress)."""
        holder = record.evolve(status=RecordStatus.IN_PROGRESS)
        values = {
            "status": record.status.value,
            "result": record.result,
            "error": record.error,
            "completed_at": record.completed_at,
            "expires_at": record.expires_at,
            "lease_expires_at": None,
            "updated_at": self._clock.now(),
        }
        async with self._connection("store the result") as conn:
            result = await conn.execute(_UPDATE_HELD, {**values, **_where(holder)})
            return result.rowcount == 1

    async def renew(self, record: StoredRecord, lease_expires_at: dt.datetime) -> bool:
        """Extend the lease of a claim still held by ``record``'s holder."""
        async with self._connection("renew the lease") as conn:
            values = {"lease_expires_at": lease_expires_at, "updated_at": self._clock.now()}
            result = await conn.execute(_UPDATE_HELD, {**values, **_where(record)})
            return result.rowcount == 1

    async def release(self, record: StoredRecord) -> bool:
        """Delete the claim if ``record``'s holder still holds it."""
        async with self._connection("release the claim") as conn:
            return (await conn.execute(_RELEASE, _where(record))).rowcount == 1

    async def purge_expired(self, now: dt.datetime, *, batch_size: int = 1000) -> int:
        """Delete expired records, ``batch_size`` rows per statement so locks stay short."""
        if batch_size < 1:
            raise PersistenceError("batch_size must be at least 1", operation="idempotency.purge")
        total = 0
        async with self._connection("purge expired records") as conn:
            while True:
                batch = select(_C.tenant_id, _C.idempotency_key).where(_C.expires_at <= now)
                keys = tuple_(_C.tenant_id, _C.idempotency_key)
                result = await conn.execute(delete(_T).where(keys.in_(batch.limit(batch_size))))
                total += result.rowcount
                if result.rowcount < batch_size:
                    return total
