"""The saga store's batch write on PostgreSQL: any batch is one statement.

Arrays of the batch's values are unnested; ``created`` inserts the new sagas, ``fenced``
updates the sagas whose lease the writer still holds, ``written`` upserts the step rows of
exactly those sagas and ``logged`` appends their history entries (in the order given). One
round trip, one commit (autocommit), atomic per saga and for the whole batch. The statement
is generated once from the tables' metadata (names, columns and their types), so it follows
the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import JSON, Column, Table
from sqlalchemy.dialects import postgresql

from dotmac_shared.business_logic.persistence._driver import driver_connection
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

__all__ = ["PostgresBatchWriter"]

_SAGAS = cast(Table, SagaExecution.__table__)
_STEPS = cast(Table, SagaStepExecution.__table__)
_EVENTS = cast(Table, SagaEventEntry.__table__)
_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def _array_type(column: Column[Any]) -> str:
    """The array type a column's values are sent as (JSON goes as text, cast on use)."""
    if isinstance(column.type, JSON):
        return "text[]"
    return f"{column.type.compile(dialect=_DIALECT).lower()}[]"


def _value(alias: str, column: Column[Any]) -> str:
    """``alias.column`` as the column takes it (JSON text cast to ``jsonb``)."""
    cast_to = "::jsonb" if isinstance(column.type, JSON) else ""
    return f"{alias}.{column.name}{cast_to}"


class _Unnest:
    """``unnest($a::t[], ...) AS alias(columns)`` over parameters numbered from ``first``."""

    def __init__(self, alias: str, columns: Sequence[tuple[str, str]], first: int) -> None:
        self.alias = alias
        self.names = [name for name, _ in columns]
        arrays = ", ".join(f"${first + i}::{kind}" for i, (_, kind) in enumerate(columns))
        self.sql = f"unnest({arrays}) AS {alias}({', '.join(self.names)})"
        self.next = first + len(columns)


def _statement() -> str:
    sagas, steps = _SAGAS.name, _STEPS.name
    new = _Unnest("n", [(n, _array_type(_SAGAS.c[n])) for n in NEW_COLUMNS], 1)
    change = _Unnest(
        "c",
        [*((n, _array_type(_SAGAS.c[n])) for n in CHANGE_COLUMNS), ("final", "boolean[]")],
        new.next,
    )
    step = _Unnest("r", [(n, _array_type(_STEPS.c[n])) for n in STEP_COLUMNS], change.next)
    event = _Unnest("e", [(n, _array_type(_EVENTS.c[n])) for n in EVENT_COLUMNS], step.next)
    # WITH ORDINALITY: the entries get their ids in the order given (a saga's history order).
    event_sql = event.sql.replace(
        f"AS e({', '.join(event.names)})", f"WITH ORDINALITY AS e({', '.join(event.names)}, ord)"
    )
    events = _EVENTS.name
    inserted = [*NEW_COLUMNS, "updated_at", "cancel_requested"]
    new_values = [_value("n", _SAGAS.c[n]) for n in NEW_COLUMNS] + ["n.created_at", "false"]
    changed = [n for n in CHANGE_COLUMNS if n not in ("saga_id", "lease_owner")]
    step_keys = {"saga_id", "step_name"}
    return f"""
WITH created AS (
    INSERT INTO {sagas} ({", ".join(inserted)})
    SELECT {", ".join(new_values)}
    FROM {new.sql}
    ON CONFLICT (saga_id) DO NOTHING
    RETURNING saga_id
),
fenced AS (
    UPDATE {sagas} AS s
    SET {", ".join(f"{n} = {_value('c', _SAGAS.c[n])}" for n in changed)},
        lease_owner = CASE WHEN c.final THEN NULL ELSE s.lease_owner END,
        lease_expires_at = CASE WHEN c.final THEN NULL ELSE s.lease_expires_at END
    FROM {change.sql}
    WHERE s.saga_id = c.saga_id AND s.lease_owner = c.lease_owner
    RETURNING s.saga_id, s.cancel_requested
),
written AS (
    INSERT INTO {steps} ({", ".join(STEP_COLUMNS)})
    SELECT {", ".join(_value("r", _STEPS.c[n]) for n in STEP_COLUMNS)}
    FROM {step.sql}
    WHERE r.saga_id IN (SELECT saga_id FROM created UNION ALL SELECT saga_id FROM fenced)
    ON CONFLICT (saga_id, step_name) DO UPDATE SET
        {", ".join(f"{n} = excluded.{n}" for n in STEP_COLUMNS if n not in step_keys)}
),
logged AS (
    INSERT INTO {events} ({", ".join(EVENT_COLUMNS)})
    SELECT {", ".join(_value("e", _EVENTS.c[n]) for n in EVENT_COLUMNS)}
    FROM {event_sql}
    WHERE e.saga_id IN (SELECT saga_id FROM created UNION ALL SELECT saga_id FROM fenced)
    ORDER BY e.ord
)
SELECT saga_id, NULL::boolean AS cancel_requested, true AS created FROM created
UNION ALL
SELECT saga_id, cancel_requested, false FROM fenced
"""


_WRITE = _statement()


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Transpose ``rows`` into ``width`` column lists (PostgreSQL array parameters)."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


class PostgresBatchWriter(BatchWriter):
    """A batch is one statement on the driver connection: one round trip, one commit."""

    async def write(
        self, batch: list[Write], new: list[tuple[Any, ...]], changes: list[tuple[Any, ...]]
    ) -> tuple[set[str], dict[str, bool]]:
        """Write ``batch``; see :meth:`BatchWriter.write`."""
        steps = [row for w in batch for row in w.steps]
        events = [row for w in batch for row in w.events]
        params = (
            *_columns(new, len(NEW_COLUMNS)),
            *_columns(changes, len(CHANGE_COLUMNS) + 1),
            *_columns(steps, len(STEP_COLUMNS)),
            *_columns(events, len(EVENT_COLUMNS)),
        )
        async with driver_connection(self.engine) as raw:
            rows: Sequence[Any] = await raw.fetch(_WRITE, *params)
        created = {saga_id for saga_id, _, was_created in rows if was_created}
        held = {saga_id: bool(cancel) for saga_id, cancel, was_created in rows if not was_created}
        return created, held
