"""The saga store's batch write on SQLite: one ``BEGIN IMMEDIATE`` transaction.

SQLite has no data-modifying CTEs and one writer at a time: a batch is one transaction of at
most four statements: insert the new sagas, update the sagas whose lease the writer still
holds (both return which rows they wrote), upsert the step rows of exactly those sagas (the
first three take the batch's rows as one JSON array, ``json_each``), and append their history
entries (plain parameters, ``executemany``). The transaction takes at most one trip to a
worker thread, and none when a small batch gets the write lock at once
(see ``sqlite_driver.run_transaction``). The statements are generated once from the tables'
metadata.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, cast

from sqlalchemy import Table
from sqlalchemy.exc import DBAPIError

from dotmac_shared.business_logic.persistence._sqlite_driver import run_transaction
from dotmac_shared.business_logic.persistence.models import (
    SagaEventEntry,
    SagaExecution,
    SagaStepExecution,
)
from dotmac_shared.business_logic.sagas._group_commit import Write
from dotmac_shared.business_logic.sagas._store import (
    CHANGE_COLUMNS,
    EVENT_COLUMNS,
    NEW_COLUMNS,
    STEP_COLUMNS,
    BatchWriter,
)

__all__ = ["SqliteBatchWriter"]

_SAGAS = cast(Table, SagaExecution.__table__)
_STEPS = cast(Table, SagaStepExecution.__table__)
_EVENTS = cast(Table, SagaEventEntry.__table__)
#: Largest batch that may be written on the event loop's thread (see
#: ``sqlite_driver.run_transaction``): a few changes cost less there than a trip to the
#: worker thread; a larger batch makes that trip worth it and would hold the loop longer.
_INLINE_MAX_BATCH = 4


def _at(alias: str, index: int) -> str:
    return f"json_extract({alias}.value, '$[{index}]')"


def _statements() -> tuple[str, str, str, str]:
    sagas, steps = _SAGAS.name, _STEPS.name
    created = NEW_COLUMNS.index("created_at")
    insert = f"""
INSERT INTO {sagas} ({", ".join((*NEW_COLUMNS, "updated_at", "cancel_requested"))})
SELECT {", ".join(_at("n", i) for i in range(len(NEW_COLUMNS)))}, {_at("n", created)}, 0
FROM json_each(?) AS n WHERE true
ON CONFLICT (saga_id) DO NOTHING
RETURNING saga_id
"""
    final = _at("c", len(CHANGE_COLUMNS))
    changed = [
        f"{name} = {_at('c', i)}"
        for i, name in enumerate(CHANGE_COLUMNS)
        if name not in ("saga_id", "lease_owner")
    ]
    update = f"""
UPDATE {sagas} AS s
SET {", ".join(changed)},
    lease_owner = CASE WHEN {final} THEN NULL ELSE s.lease_owner END,
    lease_expires_at = CASE WHEN {final} THEN NULL ELSE s.lease_expires_at END
FROM json_each(?) AS c
WHERE s.saga_id = {_at("c", CHANGE_COLUMNS.index("saga_id"))}
    AND s.lease_owner = {_at("c", CHANGE_COLUMNS.index("lease_owner"))}
RETURNING saga_id, cancel_requested
"""
    upsert = f"""
INSERT INTO {steps} ({", ".join(STEP_COLUMNS)})
SELECT {", ".join(_at("r", i) for i in range(len(STEP_COLUMNS)))}
FROM json_each(?) AS r WHERE true
ON CONFLICT (saga_id, step_name) DO UPDATE SET
    {", ".join(f"{n} = excluded.{n}" for n in STEP_COLUMNS if n not in ("saga_id", "step_name"))}
"""
    # History rows are only inserted (no fence in the statement: the caller picks the rows
    # of the sagas written), so they go as plain parameters (executemany), in order.
    log = f"""
INSERT INTO {_EVENTS.name} ({", ".join(EVENT_COLUMNS)})
VALUES ({", ".join("?" for _ in EVENT_COLUMNS)})
"""
    return insert, update, upsert, log


_INSERT, _UPDATE, _STEPS_UPSERT, _LOG = _statements()


def _batch(
    connection: sqlite3.Connection,
    new: str,
    changes: str,
    steps: list[tuple[bool, str, list[tuple[Any, ...]], list[tuple[Any, ...]]]],
) -> tuple[set[str], dict[str, bool]]:
    """Write one batch inside the caller's transaction: the created and held sagas."""
    created: set[str] = set()
    held: dict[str, bool] = {}
    statement = _INSERT
    try:
        if new != "[]":
            created = {saga_id for (saga_id,) in connection.execute(statement, (new,))}
        if changes != "[]":
            statement = _UPDATE
            rows = connection.execute(statement, (changes,))
            held = {saga_id: bool(cancel) for saga_id, cancel in rows}
        # Only the steps of sagas whose row was written: a saga that lost its lease (or
        # whose id was taken) writes nothing.
        landed = [
            (step_rows, event_rows)
            for is_new, saga_id, step_rows, event_rows in steps
            if (saga_id in created if is_new else saga_id in held)
        ]
        written = [row for step_rows, _ in landed for row in step_rows]
        if written:
            statement = _STEPS_UPSERT
            connection.execute(statement, (json.dumps(written),))
        logged = [row for _, event_rows in landed for row in event_rows]
        if logged:
            statement = _LOG
            connection.executemany(statement, logged)
    except sqlite3.Error as exc:
        # As SQLAlchemy would have raised it (OperationalError, IntegrityError, ...).
        raise DBAPIError.instance(statement, None, exc, sqlite3.Error) from exc
    return created, held


class SqliteBatchWriter(BatchWriter):
    """A batch is one ``BEGIN IMMEDIATE`` transaction of at most four statements."""

    async def write(
        self, batch: list[Write], new: list[tuple[Any, ...]], changes: list[tuple[Any, ...]]
    ) -> tuple[set[str], dict[str, bool]]:
        """Write ``batch``; see :meth:`BatchWriter.write`."""
        new_json, changes_json = json.dumps(new), json.dumps(changes)
        steps = [(w.new is not None, w.saga_id, w.steps, w.events) for w in batch]
        return await run_transaction(
            self.engine,
            lambda connection: _batch(connection, new_json, changes_json, steps),
            inline=len(batch) <= _INLINE_MAX_BATCH,
        )
