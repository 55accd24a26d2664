"""The SQLite lane (standard sqlite3 driver on threads of our own) and the engine's settings.

Where work ran is read from the thread it ran on: the event loop's own thread (inline, no
trip) or one of the lane's worker threads (one trip).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from dotmac_shared.business_logic import InvalidInputError
from dotmac_shared.business_logic.persistence import autocommit, create_engine
from dotmac_shared.business_logic.persistence._sqlite_driver import (
    _CHECKPOINT_EVERY,
    run_in_thread,
    run_read,
    run_transaction,
    sqlite_lane,
)
from tests.support.services import sqlite_url


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


async def _values(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT v FROM t ORDER BY id"))).scalars())


def _insert(*values: str, ran_on: list[int] | None = None) -> Callable[[sqlite3.Connection], int]:
    def work(connection: sqlite3.Connection) -> int:
        if ran_on is not None:
            ran_on.append(threading.get_ident())
        connection.executemany("INSERT INTO t (v) VALUES (?)", [(v,) for v in values])
        return len(values)

    return work


def _lane_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name.startswith("dotmac-sqlite"))


# --- the async engine: SQLAlchemy's own aiosqlite dialect, with the framework's settings ------


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
    # engine's level. Had that been the driver's "" (implicit DEFERRED BEGIN), a later
    # autocommit write on the same pooled connection would have been wrapped in a BEGIN
    # nobody commits, and lost.
    async with sqlite_engine.connect() as conn:
        switched = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await switched.execute(text("SELECT 1"))
    async with autocommit(sqlite_engine).connect() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('kept')"))
    assert await _values(sqlite_engine) == ["kept"]


async def test_transaction_takes_the_write_lock_when_it_begins(sqlite_engine):
    # BEGIN IMMEDIATE: a second writer cannot even begin while the first is open.
    async with sqlite_engine.begin() as conn:
        await conn.execute(text("SELECT 1"))
        other = sqlite3.connect(sqlite_engine.url.database, isolation_level=None, timeout=0)
        try:
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
        finally:
            other.close()


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


async def test_transaction_runs_on_the_event_loop_thread_when_the_lock_is_free(sqlite_engine):
    ran_on: list[int] = []
    assert await run_transaction(sqlite_engine, _insert("a", "b", ran_on=ran_on)) == 2
    assert ran_on == [threading.get_ident()]
    assert await _values(sqlite_engine) == ["a", "b"]


async def test_transaction_waits_on_a_worker_thread_when_another_writer_holds_the_lock(
    sqlite_engine,
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
    ticking = asyncio.create_task(ticker())
    ran_on: list[int] = []
    start = time.monotonic()
    await run_transaction(sqlite_engine, _insert("second", ran_on=ran_on))
    waited = time.monotonic() - start
    ticking.cancel()
    blocker.close()
    assert waited >= 0.25
    assert ticks >= 10  # the event loop ran on while the transaction waited for the lock
    assert ran_on != [threading.get_ident()]
    assert await _values(sqlite_engine) == ["first", "second"]
    # The inline connection's busy timeout of 0 made it give way; the next one is inline.
    again: list[int] = []
    await run_transaction(sqlite_engine, _insert("third", ran_on=again))
    assert again == [threading.get_ident()]


@pytest.mark.parametrize(
    ("failing", "raised"),
    [("python", ValueError), ("constraint", IntegrityError)],
)
@pytest.mark.parametrize("inline", [True, False])
async def test_nothing_is_written_when_work_fails(sqlite_engine, failing, raised, inline):
    def work(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO t (v) VALUES ('a')")
        if failing == "python":
            raise ValueError("boom")
        connection.execute("INSERT INTO t (v) VALUES ('a')")  # UNIQUE

    with pytest.raises(raised):
        await run_transaction(sqlite_engine, work, inline=inline)
    assert await _values(sqlite_engine) == []
    # The connection was left outside any transaction: the next transaction commits.
    await run_transaction(sqlite_engine, _insert("b"), inline=inline)
    assert await _values(sqlite_engine) == ["b"]


async def test_transaction_runs_on_a_worker_thread_when_not_inline(sqlite_engine):
    ran_on: list[int] = []
    await run_transaction(sqlite_engine, _insert("a", ran_on=ran_on), inline=False)
    assert ran_on and ran_on != [threading.get_ident()]
    assert await _values(sqlite_engine) == ["a"]


async def test_every_nth_inline_transaction_goes_to_a_worker_so_the_wal_is_checkpointed(
    sqlite_engine,
):
    # SQLite's automatic checkpoint after every commit on the lane's connections; the
    # inline connection turns it off, so only the worker's commit may checkpoint.
    @event.listens_for(sqlite_lane(sqlite_engine).engine, "connect")
    def _every_commit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA wal_autocheckpoint=1")

    wal = Path(f"{sqlite_engine.url.database}-wal")
    here = threading.get_ident()
    ran_on: list[int] = []
    for i in range(_CHECKPOINT_EVERY):
        await run_transaction(sqlite_engine, _insert(f"inline {i}", ran_on=ran_on))
    assert set(ran_on) == {here}
    # No inline commit checkpointed, so none restarted the WAL: it holds every commit.
    assert wal.stat().st_size >= _CHECKPOINT_EVERY * 4096
    ran_on.clear()
    await run_transaction(sqlite_engine, _insert("on a worker", ran_on=ran_on))
    await run_transaction(sqlite_engine, _insert("inline again", ran_on=ran_on))
    assert ran_on[0] != here
    assert ran_on[1] == here
    # The worker's commit checkpointed the WAL, so the next commit restarted it.
    probe = sqlite3.connect(sqlite_engine.url.database)
    try:
        _, frames, _ = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        probe.close()
    assert frames < 8
    assert len(await _values(sqlite_engine)) == _CHECKPOINT_EVERY + 2


async def test_transaction_sees_the_async_engines_writes_when_they_were_committed(
    sqlite_engine,
):
    async with sqlite_engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (v) VALUES ('from the ORM side')"))

    def count(connection: sqlite3.Connection) -> int:
        return int(connection.execute("SELECT count(*) FROM t").fetchone()[0])

    assert await run_transaction(sqlite_engine, count) == 1
    assert await run_read(sqlite_engine, count) == 1


# --- run_read and run_in_thread -------------------------------------------------------------


async def test_read_runs_on_the_event_loop_thread_when_the_inline_connection_is_free(
    sqlite_engine,
):
    await run_transaction(sqlite_engine, _insert("a"))
    ran_on: list[int] = []

    def read(connection: sqlite3.Connection) -> list[Any]:
        ran_on.append(threading.get_ident())
        return connection.execute("SELECT v FROM t").fetchall()

    assert await run_read(sqlite_engine, read) == [("a",)]
    assert ran_on == [threading.get_ident()]
    assert await run_read(sqlite_engine, read, inline=False) == [("a",)]
    assert ran_on[1] != threading.get_ident()


async def test_read_is_run_again_on_a_worker_thread_when_sqlite_answers_busy_inline(
    sqlite_engine,
):
    await run_transaction(sqlite_engine, _insert("a"))
    blocker = sqlite3.connect(sqlite_engine.url.database, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    blocker.execute("INSERT INTO t (v) VALUES ('b')")
    asyncio.get_running_loop().call_later(0.3, blocker.commit)
    ran_on: list[int] = []

    def read(connection: sqlite3.Connection) -> list[Any]:
        # A read that needs the write lock (so that SQLite can answer busy at all).
        ran_on.append(threading.get_ident())
        connection.execute("BEGIN IMMEDIATE")
        try:
            return connection.execute("SELECT v FROM t ORDER BY id").fetchall()
        finally:
            connection.commit()

    try:
        assert await run_read(sqlite_engine, read) == [("a",), ("b",)]
    finally:
        blocker.close()
    assert ran_on[0] == threading.get_ident()  # tried inline first: busy at once
    assert ran_on[1] != threading.get_ident()  # then waited on a worker
    assert len(ran_on) == 2


async def test_whole_transaction_runs_in_one_trip_when_given_to_run_in_thread(sqlite_engine):
    ran_on: list[int] = []

    def work(connection: sqlite3.Connection) -> int:
        ran_on.append(threading.get_ident())
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany("INSERT INTO t (v) VALUES (?)", [("a",), ("b",)])
        connection.commit()
        return int(connection.execute("SELECT count(*) FROM t").fetchone()[0])

    assert await run_in_thread(sqlite_engine, work) == 2
    assert len(ran_on) == 1
    assert ran_on != [threading.get_ident()]


async def test_worker_connection_is_replaced_when_work_leaves_a_transaction_open(sqlite_engine):
    def leave_open(connection: sqlite3.Connection) -> None:
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO t (v) VALUES ('never committed')")
        raise RuntimeError("cut short")

    with pytest.raises(RuntimeError, match="cut short"):
        await run_in_thread(sqlite_engine, leave_open)
    # Its uncommitted write and its write lock went with the discarded connection.
    await run_transaction(sqlite_engine, _insert("a"), inline=False)
    assert await _values(sqlite_engine) == ["a"]


# --- the lane's life ------------------------------------------------------------------------


async def test_views_of_an_engine_share_its_lane_when_they_share_its_pool(sqlite_engine):
    assert sqlite_lane(autocommit(sqlite_engine)) is sqlite_lane(sqlite_engine)


async def test_lane_threads_and_connections_end_when_the_engine_is_disposed(tmp_path):
    before = _lane_threads()
    async with _engine_with_table(sqlite_url(tmp_path)) as engine:
        lane = sqlite_lane(engine)
        await run_transaction(engine, _insert("a"), inline=False)
        await run_transaction(engine, _insert("b"))
        assert _lane_threads() > before
    assert _lane_threads() == before
    assert lane.engine.pool.checkedout() == 0
    # A disposed engine can be used again: it gets a new lane.
    await run_transaction(engine, _insert("c"), inline=False)
    assert sqlite_lane(engine) is not lane
    assert await _values(engine) == ["a", "b", "c"]
    await engine.dispose()
    assert _lane_threads() == before


async def test_in_memory_database_is_refused_with_a_clear_error_when_a_lane_is_asked_for():
    engine = create_engine("sqlite:///:memory:")
    try:
        with pytest.raises(InvalidInputError, match="need an SQLite file"):
            await run_transaction(engine, _insert("a"))
    finally:
        await engine.dispose()


async def test_lane_is_refused_with_a_clear_error_when_the_engine_is_not_sqlite(engine):
    if engine.dialect.name == "sqlite":
        assert sqlite_lane(engine).engine.dialect.name == "sqlite"
        return
    with pytest.raises(InvalidInputError, match="needs an SQLite engine"):
        sqlite_lane(engine)
