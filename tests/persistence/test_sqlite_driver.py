"""The one-trip aiosqlite adapter and the ``autocommit`` view of an engine.

Trips are counted at ``aiosqlite.Connection._execute``, the one door to aiosqlite's thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from dotmac_shared.business_logic.persistence import autocommit, create_engine
from dotmac_shared.business_logic.persistence.sqlite_driver import (
    _CHECKPOINT_EVERY,
    run_in_thread,
    run_transaction,
)
from tests.support.services import sqlite_url


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[collections.Counter[str]]:
    """Count every call queued on an aiosqlite connection's thread."""
    counter: collections.Counter[str] = collections.Counter()
    original = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        counter["trips"] += 1
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    yield counter


@contextlib.asynccontextmanager
async def _engine_with_table(url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)"))
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An SQLite engine with table ``t``."""
    async with _engine_with_table(sqlite_url(tmp_path)) as engine:
        yield engine


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine with table ``t`` on each backend."""
    async with _engine_with_table(database_url) as engine:
        yield engine


async def _driver_connection(conn: Any) -> Any:
    return (await conn.get_raw_connection()).driver_connection


async def _values(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT v FROM t ORDER BY id"))).scalars())


async def test_statement_costs_one_trip_when_rows_are_fetched(sqlite_engine, trips):
    async with autocommit(sqlite_engine).connect() as conn:
        await conn.execute(text("SELECT 1"))  # the pool's first connect is not counted
        trips.clear()
        rows = (await conn.execute(text("SELECT :a AS a, :b AS b"), {"a": 1, "b": "x"})).all()
    assert [tuple(r) for r in rows] == [(1, "x")]
    assert trips["trips"] == 1


async def test_autocommit_checkout_costs_one_trip_when_statement_is_single(sqlite_engine, trips):
    auto = autocommit(sqlite_engine)
    async with auto.connect() as conn:
        await conn.execute(text("SELECT 1"))
    trips.clear()
    async with auto.connect() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('a')"))
    # No BEGIN, no COMMIT, no isolation-level switch, no reset on return: one trip.
    assert trips["trips"] == 1
    assert await _values(sqlite_engine) == ["a"]


async def test_transaction_costs_begin_statement_commit(sqlite_engine, trips):
    async with sqlite_engine.begin() as conn:
        await conn.execute(text("SELECT 1"))
    trips.clear()
    async with sqlite_engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('a')"))
    assert trips["trips"] == 3  # BEGIN IMMEDIATE, INSERT, COMMIT
    assert await _values(sqlite_engine) == ["a"]


async def test_rollback_still_undoes_writes_when_transaction_is_open(sqlite_engine):
    async with sqlite_engine.connect() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('gone')"))
        await conn.rollback()
    async with sqlite_engine.connect() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('also gone')"))
        # closed without commit: the pool's reset-on-return rolls it back
    assert await _values(sqlite_engine) == []


async def test_rowcount_lastrowid_and_executemany_are_reported(sqlite_engine):
    async with sqlite_engine.begin() as conn:
        result = await conn.execute(text("INSERT INTO t (v) VALUES (:v)"), [{"v": "a"}, {"v": "b"}])
        assert result.rowcount == 2
        one = await conn.execute(text("INSERT INTO t (v) VALUES ('c')"))
        assert one.lastrowid == 3
        updated = await conn.execute(text("UPDATE t SET v = v || '!' WHERE id > 1"))
        assert updated.rowcount == 2
    assert await _values(sqlite_engine) == ["a", "b!", "c!"]


async def test_driver_error_is_sqlalchemy_error_and_leaves_nothing_when_constraint_fails(
    sqlite_engine,
):
    with pytest.raises(IntegrityError):
        async with sqlite_engine.begin() as conn:
            await conn.execute(text("INSERT INTO t (v) VALUES ('a')"))
            await conn.execute(text("INSERT INTO t (v) VALUES ('a')"))
    assert await _values(sqlite_engine) == []


async def test_autocommit_write_is_kept_when_connection_had_isolation_level_switched(
    sqlite_engine,
):
    # SQLAlchemy resets a connection that ran with isolation_level=AUTOCOMMIT to the
    # driver's "" (implicit DEFERRED BEGIN). Had that stuck, a later autocommit write on the
    # same pooled connection would have been wrapped in a BEGIN nobody commits, and lost.
    async with sqlite_engine.connect() as conn:
        switched = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await switched.execute(text("SELECT 1"))
    async with autocommit(sqlite_engine).connect() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('kept')"))
    assert await _values(sqlite_engine) == ["kept"]


async def test_whole_transaction_runs_in_one_trip_when_given_to_run_in_thread(sqlite_engine, trips):
    async with sqlite_engine.connect() as conn:
        raw = await _driver_connection(conn)
        trips.clear()

        def work() -> int:
            sqlite = raw._conn
            sqlite.execute("BEGIN IMMEDIATE")
            sqlite.executemany("INSERT INTO t (v) VALUES (?)", [("a",), ("b",)])
            sqlite.commit()
            return int(sqlite.execute("SELECT count(*) FROM t").fetchone()[0])

        assert await run_in_thread(raw, work) == 2
    assert trips["trips"] == 1


async def test_autocommit_statement_is_visible_at_once_on_each_backend(engine):
    async with autocommit(engine).connect() as conn:
        await conn.execute(text("INSERT INTO t (id, v) VALUES (1, 'seen')"))
        # Not committed by us: the statement committed itself.
        assert await _values(engine) == ["seen"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(values=st.lists(st.text(max_size=20), max_size=8))
async def test_values_round_trip_when_text_is_arbitrary(sqlite_engine, values):
    async with sqlite_engine.begin() as conn:
        await conn.execute(text("DELETE FROM t"))
        if values:
            await conn.execute(
                text("INSERT INTO t (id, v) VALUES (:i, :v)"),
                [{"i": i, "v": f"{i}:{v}"} for i, v in enumerate(values)],
            )
        got = list((await conn.execute(text("SELECT v FROM t ORDER BY id"))).scalars())
    assert got == [f"{i}:{v}" for i, v in enumerate(values)]


def test_failed_connect_prints_nothing_when_the_event_loop_closes_at_once(tmp_path, monkeypatch):
    # aiosqlite stops its thread on a failed connect without waiting; its answer to a loop
    # that asyncio.run() had already closed used to print "Event loop is closed" on stderr.
    thread_errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: thread_errors.append(args.exc_value))
    url = sqlite_url(tmp_path / "no" / "such" / "dir")

    async def connect_once() -> None:
        engine = create_engine(url)
        try:
            with pytest.raises(OperationalError, match="unable to open database file"):
                async with engine.connect():
                    pass
        finally:
            await engine.dispose()

    for _ in range(10):
        asyncio.run(connect_once())
    time.sleep(0.2)  # a straggling thread would report by now
    assert thread_errors == []


# --- run_transaction: on the event loop's thread when nothing would wait ----------------------


def _insert(*values: str) -> Callable[[sqlite3.Connection], int]:
    def work(connection: sqlite3.Connection) -> int:
        connection.executemany("INSERT INTO t (v) VALUES (?)", [(v,) for v in values])
        return len(values)

    return work


def _settings(raw: Any) -> tuple[int, int]:
    connection = raw._conn
    (busy,) = connection.execute("PRAGMA busy_timeout").fetchone()
    (checkpoint,) = connection.execute("PRAGMA wal_autocheckpoint").fetchone()
    return busy, checkpoint


async def test_transaction_makes_no_trip_when_lock_is_free_and_thread_idle(sqlite_engine, trips):
    async with sqlite_engine.connect() as conn:
        raw = await _driver_connection(conn)
        before = _settings(raw)
        trips.clear()
        assert await run_transaction(raw, _insert("a", "b")) == 2
        assert trips["trips"] == 0
        assert not raw._conn.in_transaction
        assert _settings(raw) == before == (30000, 1000)
    assert await _values(sqlite_engine) == ["a", "b"]


async def test_transaction_waits_on_its_thread_when_another_writer_holds_the_lock(
    sqlite_engine, trips
):
    blocker = sqlite3.connect(sqlite_engine.url.database, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    blocker.execute("INSERT INTO t (v) VALUES ('first')")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    asyncio.get_running_loop().call_later(0.3, blocker.commit)
    async with sqlite_engine.connect() as conn:
        raw = await _driver_connection(conn)
        trips.clear()
        ticking = asyncio.create_task(ticker())
        start = time.monotonic()
        await run_transaction(raw, _insert("second"))
        waited = time.monotonic() - start
        ticking.cancel()
        assert _settings(raw)[0] == 30000  # the inline try's busy timeout of 0 was undone
    blocker.close()
    assert waited >= 0.25
    assert ticks >= 10  # the event loop ran on while the transaction waited for the lock
    assert trips["trips"] == 1
    assert await _values(sqlite_engine) == ["first", "second"]


@pytest.mark.parametrize(
    ("failing", "raised"),
    [("python", ValueError), ("constraint", IntegrityError)],
)
async def test_nothing_is_written_and_settings_are_restored_when_work_fails_inline(
    sqlite_engine, trips, failing, raised
):
    def work(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO t (v) VALUES ('a')")
        if failing == "python":
            raise ValueError("boom")
        connection.execute("INSERT INTO t (v) VALUES ('a')")  # UNIQUE

    async with sqlite_engine.connect() as conn:
        raw = await _driver_connection(conn)
        trips.clear()
        with pytest.raises(raised):
            await run_transaction(raw, work)
        assert trips["trips"] == 0
        assert not raw._conn.in_transaction
        assert _settings(raw) == (30000, 1000)
    assert await _values(sqlite_engine) == []


async def test_transaction_queues_behind_the_thread_when_the_thread_is_busy(sqlite_engine, trips):
    async with sqlite_engine.connect() as conn:
        raw = await _driver_connection(conn)
        trips.clear()
        busy = asyncio.create_task(
            run_in_thread(raw, lambda: time.sleep(0.2) or threading.get_ident())
        )
        await asyncio.sleep(0.05)  # queued and running on the connection's thread
        assert not raw.idle
        ran_on: list[int] = []

        def work(connection: sqlite3.Connection) -> None:
            ran_on.append(threading.get_ident())
            connection.execute("INSERT INTO t (v) VALUES ('after')")

        await run_transaction(raw, work)
        assert ran_on == [await busy]  # on the connection's thread, after the busy call
        assert trips["trips"] == 2
    assert await _values(sqlite_engine) == ["after"]


async def test_connection_is_not_idle_while_a_cancelled_call_still_runs(sqlite_engine):
    release = threading.Event()
    async with sqlite_engine.connect() as conn:
        raw = await _driver_connection(conn)
        waiting = asyncio.create_task(run_in_thread(raw, lambda: release.wait(5)))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        # Its awaiter is gone, but the call still runs on the thread: hands off.
        assert not raw.idle
        release.set()
        deadline = time.monotonic() + 2
        while not raw.idle and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert raw.idle


async def test_inline_commits_leave_the_wal_checkpoint_to_the_thread(sqlite_engine, trips):
    wal = Path(f"{sqlite_engine.url.database}-wal")
    async with sqlite_engine.connect() as conn:
        raw = await _driver_connection(conn)
        raw._conn.execute("PRAGMA wal_autocheckpoint=1")  # SQLite's: checkpoint every commit
        trips.clear()
        for i in range(_CHECKPOINT_EVERY):
            await run_transaction(raw, _insert(f"inline {i}"))
        assert trips["trips"] == 0
        # No inline commit checkpointed, so none restarted the WAL: it holds every commit.
        assert wal.stat().st_size >= _CHECKPOINT_EVERY * 4096
        await run_transaction(raw, _insert("on the thread"))
        assert trips["trips"] == 1
        await run_transaction(raw, _insert("inline again"))
        assert trips["trips"] == 1
        # The thread's commit checkpointed the WAL, so the next commit restarted it.
        _, frames, _ = raw._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert frames < 8
        assert _settings(raw)[1] == 1
    assert len(await _values(sqlite_engine)) == _CHECKPOINT_EVERY + 2


async def test_transaction_runs_on_the_thread_when_connection_is_plain_aiosqlite(tmp_path, trips):
    async with aiosqlite.connect(tmp_path / "plain.db") as db:
        await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
        trips.clear()
        assert await run_transaction(db, _insert("a")) == 1
        assert trips["trips"] == 1
        rows = await db.execute_fetchall("SELECT v FROM t")
    assert [tuple(r) for r in rows] == [("a",)]


async def test_transaction_runs_on_the_thread_when_not_inline(sqlite_engine, trips):
    async with sqlite_engine.connect() as conn:
        raw = await _driver_connection(conn)
        trips.clear()
        await run_transaction(raw, _insert("a"), inline=False)
        assert trips["trips"] == 1
    assert await _values(sqlite_engine) == ["a"]
