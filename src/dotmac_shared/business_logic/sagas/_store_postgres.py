"""The saga store's batch write on PostgreSQL: any batch is one statement.

The batch's rows are the relations ``n`` (new sagas), ``c`` (changes), ``r`` (step rows)
and ``e`` (history entries): for one saga's small write, ``VALUES`` lists of scalar
parameters (the common case of a saga alone; one prepared statement per shape); otherwise
one array parameter per column, unnested. ``created`` inserts the new sagas, ``fenced``
updates the sagas whose lease the writer still holds, ``written`` upserts the step rows of
exactly those sagas and ``logged`` appends their history entries (in the order given). One
round trip, one commit (autocommit), atomic per saga and for the whole batch. The statements
are generated once (at import) from the tables' metadata (names, columns and their types),
so they follow the models.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import JSON, Column, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.util.concurrency import await_only, greenlet_spawn

from dotmac_shared.business_logic.persistence._driver import pooled_driver_connection
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


def _scalar_type(column: Column[Any]) -> str:
    """The type a column's values are sent as (JSON goes as text, cast on use)."""
    if isinstance(column.type, JSON):
        return "text"
    return column.type.compile(dialect=_DIALECT).lower()


def _value(alias: str, column: Column[Any]) -> str:
    """``alias.column`` as the column takes it (JSON text cast to ``jsonb``)."""
    cast_to = "::jsonb" if isinstance(column.type, JSON) else ""
    return f"{alias}.{column.name}{cast_to}"


class _Unnest:
    """``unnest($a::t[], ...) AS alias(columns)`` over parameters numbered from ``first``.

    Any number of rows: one array parameter per column. ``ordinal`` adds ``WITH ORDINALITY``
    (an ``ord`` column: the rows' order as given).
    """

    def __init__(
        self, alias: str, columns: Sequence[tuple[str, str]], first: int, *, ordinal: bool = False
    ) -> None:
        names = [name for name, _ in columns]
        arrays = ", ".join(f"${first + i}::{kind}[]" for i, (_, kind) in enumerate(columns))
        order = " WITH ORDINALITY" if ordinal else ""
        columns_sql = ", ".join([*names, "ord"] if ordinal else names)
        self.sql = f"unnest({arrays}){order} AS {alias}({columns_sql})"
        self.next = first + len(columns)


class _Values:
    """``(VALUES ($a::t, ...), ...) AS alias(columns)``: exactly ``count`` rows of scalars.

    The form of a small batch: scalar parameters cost the driver less to encode than one
    array per column, and need no transposing. With no rows, a typed empty relation.
    ``ordinal`` adds an ``ord`` column numbering the rows in the order given.
    """

    def __init__(
        self,
        alias: str,
        columns: Sequence[tuple[str, str]],
        first: int,
        count: int,
        *,
        ordinal: bool = False,
    ) -> None:
        names = [name for name, _ in columns]
        columns_sql = ", ".join([*names, "ord"] if ordinal else names)
        width = len(columns)
        if count == 0:
            nulls = [f"NULL::{kind}" for _, kind in columns]
            self.sql = f"(SELECT {', '.join([*nulls, '0'] if ordinal else nulls)} WHERE false)"
        else:
            rows = []
            for row in range(count):
                start = first + row * width
                values = [f"${start + i}::{kind}" for i, (_, kind) in enumerate(columns)]
                rows.append(f"({', '.join([*values, str(row + 1)] if ordinal else values)})")
            self.sql = f"(VALUES {', '.join(rows)})"
        self.sql += f" AS {alias}({columns_sql})"
        self.next = first + width * count


def _types(table: Table, names: Sequence[str]) -> list[tuple[str, str]]:
    """``(name, type)`` of each of ``names``: the type its values are sent as."""
    return [(n, _scalar_type(table.c[n])) for n in names]


_NEW_TYPES = _types(_SAGAS, NEW_COLUMNS)
_CHANGE_TYPES = [*_types(_SAGAS, CHANGE_COLUMNS), ("final", "boolean")]
_STEP_TYPES = _types(_STEPS, STEP_COLUMNS)
_EVENT_TYPES = _types(_EVENTS, EVENT_COLUMNS)


def _statement(shape: tuple[int, int, int, int] | None) -> str:
    """The batch write: over arrays (``shape`` None), or over scalars for a batch of ``shape``.

    ``shape`` is the number of new sagas, changes, step rows and history rows.
    """
    sources: list[Any] = []
    first = 1
    for index, (alias, types) in enumerate(
        (("n", _NEW_TYPES), ("c", _CHANGE_TYPES), ("r", _STEP_TYPES), ("e", _EVENT_TYPES))
    ):
        # WITH ORDINALITY: the entries get their ids in the order given (a saga's history).
        ordinal = alias == "e"
        if shape is None:
            source: _Unnest | _Values = _Unnest(alias, types, first, ordinal=ordinal)
        else:
            source = _Values(alias, types, first, shape[index], ordinal=ordinal)
        sources.append(source)
        first = source.next
    new, change, step, event = sources
    sagas, steps, events = _SAGAS.name, _STEPS.name, _EVENTS.name
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
    FROM {event.sql}
    WHERE e.saga_id IN (SELECT saga_id FROM created UNION ALL SELECT saga_id FROM fenced)
    ORDER BY e.ord
)
SELECT saga_id, NULL::boolean AS cancel_requested, true AS created FROM created
UNION ALL
SELECT saga_id, cancel_requested, false FROM fenced
"""


_WRITE = _statement(None)
#: A batch of one saga's write with at most this many step rows and history rows goes as
#: scalars (the common case of a saga alone: one statement per shape, few shapes, each
#: prepared once by the driver's statement cache); anything larger goes as arrays.
_SCALAR_STEPS, _SCALAR_EVENTS = 2, 4
_SCALAR_WRITES = {
    (new, 1 - new, steps, events): _statement((new, 1 - new, steps, events))
    for new in (0, 1)
    for steps in range(_SCALAR_STEPS + 1)
    for events in range(_SCALAR_EVENTS + 1)
}


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
        if len(batch) == 1:
            (one,) = batch
            steps, events = one.steps, one.events
            statement = _SCALAR_WRITES.get((len(new), len(changes), len(steps), len(events)))
            if statement is not None:
                # Row by row, in the statement's parameter order.
                flat = [*(new or changes)[0]]
                for row in steps:
                    flat.extend(row)
                for row in events:
                    flat.extend(row)
                return await self._run(statement, flat)
        steps = [row for w in batch for row in w.steps]
        events = [row for w in batch for row in w.events]
        params = (
            *_columns(new, len(NEW_COLUMNS)),
            *_columns(changes, len(CHANGE_COLUMNS) + 1),
            *_columns(steps, len(STEP_COLUMNS)),
            *_columns(events, len(EVENT_COLUMNS)),
        )
        return await self._run(_WRITE, params)

    async def _run(self, statement: str, params: Sequence[Any]) -> tuple[set[str], dict[str, bool]]:
        # Checkout, statement and checkin in one greenlet (the coroutine form of the pool
        # spawns one for the checkout and another for the checkin).
        rows: Sequence[Any] = await greenlet_spawn(self._fetch, statement, params)
        created = {saga_id for saga_id, _, was_created in rows if was_created}
        held = {saga_id: bool(cancel) for saga_id, cancel, was_created in rows if not was_created}
        return created, held

    def _fetch(self, statement: str, params: Sequence[Any]) -> Sequence[Any]:
        with pooled_driver_connection(self.engine) as raw:
            return cast(Sequence[Any], await_only(raw.fetch(statement, *params)))
