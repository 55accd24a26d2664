"""Saga throughput: a 5-step saga of no-op steps, dotmac vs DBOS vs one bare commit per step.

Each database (PostgreSQL, SQLite) gets one table with these rows:

- dotmac sequential: ``execute_saga`` back to back, one saga at a time.
- dotmac 50 in flight: the same sagas, ``asyncio.gather`` in batches of 50.
- DBOS sequential: one ``@DBOS.workflow`` calling five ``@DBOS.step`` functions, back to
  back; sync and async workflows are both measured and the faster is shown and used as the
  reference of the ratio column. DBOS 50 in flight: async workflows gathered 50 at a time.
  DBOS keeps process-global state, so each DBOS case runs in its own subprocess. On SQLite
  DBOS runs twice: with its own defaults (rollback journal, synchronous=FULL) and with
  dotmac's settings (WAL, synchronous=NORMAL, via a custom ``system_database_engine``);
  the second, faster one is the reference.
- floor: one bare single-row ``INSERT`` + ``COMMIT`` per step (5 commits per saga) with
  SQLAlchemy async on the framework's engine, sequential and 50 in flight: the least any
  saga that commits each step costs.

Under each table: client CPU per saga (``time.process_time``, all threads of the process)
and commits/statements per saga, counted in a separate pass of WARMUP sagas on an engine of
its own (so the timed runs carry no instrumentation): on PostgreSQL at asyncpg's ``fetch``
entry points plus SQLAlchemy's commit event (a statement outside a transaction is its own
commit), on SQLite with sqlite3's trace callback. Both see statements run on the driver
connection directly, as the saga store's writes are.

Every case gets a fresh database (PostgreSQL: a new database on the test server; SQLite: a
new file). The whole set runs DOTMAC_BENCH_SAGAS_ROUNDS times (default 3) and each number is
its median over the rounds: on this VM one run's ratio moves by ±20%, and alternating the
cases spreads that noise over all of them. DOTMAC_BENCH_SAGAS_N (default 300) sets the sagas
per case;
DOTMAC_BENCH_SAGAS_PROFILE=1 prints a cProfile of N more sequential dotmac sagas (top 25 by
cumulative time) per database.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

N = int(os.environ.get("DOTMAC_BENCH_SAGAS_N", "300"))
ROUNDS = int(os.environ.get("DOTMAC_BENCH_SAGAS_ROUNDS", "3"))
WARMUP = 20
IN_FLIGHT = 50
STEPS = 5
TARGET = 3.0
PROFILE = os.environ.get("DOTMAC_BENCH_SAGAS_PROFILE", "") not in ("", "0")


# --- DBOS (runs in a child process: its registry and instance are process-global) --------


def _dbos_child(system_database_url: str, label: str, wal: bool) -> None:
    """Measure DBOS in this process and print one JSON line of results."""
    import logging

    import sqlalchemy as sa
    from dbos import DBOS, DBOSConfig

    config: DBOSConfig = {
        "name": "dotmac-bench-sagas",
        "system_database_url": system_database_url,
        "log_level": "WARNING",
    }
    if wal:
        # Same SQLite settings as dotmac's engine: WAL, synchronous=NORMAL (DBOS's defaults
        # are a rollback journal with synchronous=FULL: one or two fsyncs per commit).
        engine = sa.create_engine(system_database_url)

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = "IMMEDIATE"
            dbapi_conn.execute("PRAGMA busy_timeout=30000")
            dbapi_conn.execute("PRAGMA foreign_keys=ON")
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")

        config["system_database_engine"] = engine

    @DBOS.step()
    def s1() -> dict[str, Any]:
        return {}

    @DBOS.step()
    def s2() -> dict[str, Any]:
        return {}

    @DBOS.step()
    def s3() -> dict[str, Any]:
        return {}

    @DBOS.step()
    def s4() -> dict[str, Any]:
        return {}

    @DBOS.step()
    def s5() -> dict[str, Any]:
        return {}

    @DBOS.workflow()
    def saga_sync() -> int:
        for step in (s1, s2, s3, s4, s5):
            step()
        return STEPS

    @DBOS.step()
    async def a1() -> dict[str, Any]:
        return {}

    @DBOS.step()
    async def a2() -> dict[str, Any]:
        return {}

    @DBOS.step()
    async def a3() -> dict[str, Any]:
        return {}

    @DBOS.step()
    async def a4() -> dict[str, Any]:
        return {}

    @DBOS.step()
    async def a5() -> dict[str, Any]:
        return {}

    @DBOS.workflow()
    async def saga_async() -> int:
        for step in (a1, a2, a3, a4, a5):
            await step()
        return STEPS

    DBOS(config=config)
    DBOS.launch()
    logging.getLogger("dbos").setLevel(logging.WARNING)
    results: dict[str, Any] = {"label": label}
    try:
        for _ in range(WARMUP):
            assert saga_sync() == STEPS
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(N):
            assert saga_sync() == STEPS
        results["sync_s"] = time.perf_counter() - start
        results["sync_cpu_s"] = time.process_time() - cpu

        async def run_async() -> None:
            for _ in range(WARMUP):
                assert await saga_async() == STEPS
            start, cpu = time.perf_counter(), time.process_time()
            for _ in range(N):
                assert await saga_async() == STEPS
            results["async_s"] = time.perf_counter() - start
            results["async_cpu_s"] = time.process_time() - cpu
            start = time.perf_counter()
            for _ in range(0, N, IN_FLIGHT):
                done = await asyncio.gather(*(saga_async() for _ in range(IN_FLIGHT)))
                assert done == [STEPS] * IN_FLIGHT
            results["async_inflight_s"] = time.perf_counter() - start
            results["async_inflight_n"] = len(range(0, N, IN_FLIGHT)) * IN_FLIGHT

        asyncio.run(run_async())
        results["workflows"] = len(DBOS.list_workflows(limit=10 * N))
    finally:
        DBOS.destroy()
    print(json.dumps(results), flush=True)


def _run_dbos(system_database_url: str, label: str, *, wal: bool = False) -> dict[str, Any]:
    code = (
        "import benchmarks.bench_sagas as b; "
        f"b._dbos_child({system_database_url!r}, {label!r}, {wal!r})"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"DBOS child failed ({label}):\n{out.stdout}\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# --- counting commits and statements ---------------------------------------------------------


class _Counter:
    """Commits and statements an async engine runs, counted at the driver."""

    def __init__(self) -> None:
        self.commits = 0
        self.statements = 0
        self._lock = threading.Lock()
        self._patched: list[tuple[Any, Any]] = []

    def attach(self, engine: Any) -> None:
        from sqlalchemy import event

        sync = engine.sync_engine
        if engine.dialect.name == "sqlite":
            from dotmac_shared.business_logic.persistence._sqlite_driver import sqlite_lane

            def on_connect(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.run_async(lambda raw: raw.set_trace_callback(self._trace))

            def on_lane_connect(dbapi_connection: Any, _record: Any) -> None:
                dbapi_connection.set_trace_callback(self._trace)

            event.listen(sync, "connect", on_connect)
            # The saga store's writes run on the engine's SQLite lane (sqlite3 connections).
            event.listen(sqlite_lane(engine).engine, "connect", on_lane_connect)
        else:
            # At asyncpg's two entry points: SQLAlchemy runs prepared statements, and the
            # saga store's writes call Connection.fetch on the driver connection directly.
            # A statement outside a transaction is its own commit.
            import asyncpg
            from asyncpg.prepared_stmt import PreparedStatement

            def counted(fetch: Any, connection_of: Any) -> Any:
                async def fetch_counted(this: Any, *args: Any, **kwargs: Any) -> Any:
                    self.statements += 1
                    if not connection_of(this).is_in_transaction():
                        self.commits += 1
                    return await fetch(this, *args, **kwargs)

                return fetch_counted

            for cls, connection_of in (
                (asyncpg.Connection, lambda conn: conn),
                (PreparedStatement, lambda ps: ps._connection),
            ):
                self._patched.append((cls, cls.fetch))
                cls.fetch = counted(cls.fetch, connection_of)  # type: ignore[method-assign]
            event.listen(sync, "commit", self._commit)

    def detach(self) -> None:
        """Undo the asyncpg patches."""
        for cls, fetch in self._patched:
            cls.fetch = fetch
        self._patched.clear()

    def _trace(self, sql: str) -> None:  # runs on whichever thread ran the statement
        head = sql.lstrip()[:8].upper()
        with self._lock:
            if head.startswith("COMMIT"):
                self.commits += 1
            elif not head.startswith(("ROLLBACK", "PRAGMA")):
                self.statements += 1

    def _commit(self, *_args: Any) -> None:
        self.commits += 1


async def _count(engine: Any, run: Any) -> tuple[float, float]:
    """Commits and statements per saga of ``run(i)`` over WARMUP sagas (after one more)."""
    counter = _Counter()
    counter.attach(engine)
    try:
        await run(-1)  # opens the connection (its set-up statements are not counted)
        counter.commits = counter.statements = 0
        for i in range(WARMUP):
            await run(i)
    finally:
        counter.detach()
        await engine.dispose()
    return counter.commits / WARMUP, counter.statements / WARMUP


# --- dotmac ---------------------------------------------------------------------------------


async def _noop(ctx: Any) -> dict[str, Any]:
    return {}


def _coordinator(factory: Any) -> Any:
    from dotmac_shared.business_logic.sagas import SagaCoordinator, SagaDefinition, SagaStep

    coordinator = SagaCoordinator(factory)
    coordinator.register_saga(
        SagaDefinition(
            name="bench_noop",
            steps=[SagaStep(name=f"step_{i}", execute=_noop) for i in range(1, STEPS + 1)],
        )
    )
    return coordinator


async def _one_saga(coordinator: Any) -> None:
    from dotmac_shared.business_logic.sagas import SagaContext

    result = await coordinator.execute_saga(
        saga_name="bench_noop",
        context=SagaContext(saga_id=uuid.uuid4().hex, tenant_id="bench"),
        initial_data={},
    )
    if result["status"] != "completed" or len(result["step_results"]) != STEPS:
        raise AssertionError(f"saga did not complete: {result}")


async def _dotmac(url: str) -> dict[str, float]:
    from dotmac_shared.business_logic.persistence import create_session_factory, engine_of

    counting = await asyncio.to_thread(create_session_factory, url)
    counted = _coordinator(counting)
    commits, statements = await _count(engine_of(counting), lambda _i: _one_saga(counted))
    factory = create_session_factory(url, migrate=False)
    coordinator = _coordinator(factory)
    try:
        for _ in range(WARMUP):
            await _one_saga(coordinator)
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(N):
            await _one_saga(coordinator)
        sequential = time.perf_counter() - start
        sequential_cpu = time.process_time() - cpu
        batches = max(1, N // IN_FLIGHT)
        start = time.perf_counter()
        for _ in range(batches):
            await asyncio.gather(*(_one_saga(coordinator) for _ in range(IN_FLIGHT)))
        in_flight = time.perf_counter() - start
        if PROFILE:
            await _profile(coordinator)
        stored = await coordinator.list_sagas(tenant_id="bench", status="completed", limit=10**6)
        expected = 2 * WARMUP + 1 + N + batches * IN_FLIGHT + (N if PROFILE else 0)
        if len(stored) != expected:
            raise AssertionError(f"{len(stored)} completed sagas stored, expected {expected}")
    finally:
        await engine_of(factory).dispose()
    return {
        "sequential_s": sequential,
        "sequential_cpu_s": sequential_cpu,
        "sequential_n": N,
        "in_flight_s": in_flight,
        "in_flight_n": batches * IN_FLIGHT,
        "commits_per_saga": commits,
        "statements_per_saga": statements,
    }


async def _profile(coordinator: Any) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(N):
        await _one_saga(coordinator)
    profiler.disable()
    print(f"\n  cProfile of {N} sequential sagas (top 25 by cumulative time):", flush=True)
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(25)


# --- floor: one bare INSERT + COMMIT per step -----------------------------------------------


async def _floor(url: str) -> dict[str, float]:
    from sqlalchemy import text

    from dotmac_shared.business_logic.persistence import create_engine

    # The framework's engine settings (pool; SQLite: WAL, synchronous=NORMAL, BEGIN
    # IMMEDIATE), so the floor pays what any saga store on this engine pays per commit.
    engine = create_engine(url)
    insert = text("INSERT INTO bench_floor (saga, step) VALUES (:saga, :step)")
    try:
        async with engine.begin() as conn:
            key = "SERIAL" if engine.dialect.name == "postgresql" else "INTEGER"
            await conn.execute(
                text(f"CREATE TABLE bench_floor (id {key} PRIMARY KEY, saga INT, step INT)")
            )

        async def saga(number: int, on: Any = engine) -> None:
            for step in range(STEPS):
                async with on.begin() as conn:
                    await conn.execute(insert, {"saga": number, "step": step})

        counting = create_engine(url)
        commits, statements = await _count(counting, lambda i: saga(-1000 - i, counting))
        for i in range(WARMUP):
            await saga(-i - 1)
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(N):
            await saga(i)
        elapsed = time.perf_counter() - start
        elapsed_cpu = time.process_time() - cpu
        batches = max(1, N // IN_FLIGHT)
        start = time.perf_counter()
        for b in range(batches):
            await asyncio.gather(*(saga(N + b * IN_FLIGHT + i) for i in range(IN_FLIGHT)))
        in_flight = time.perf_counter() - start
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT count(*) FROM bench_floor"))).scalar_one()
        if rows != (2 * WARMUP + 1 + N + batches * IN_FLIGHT) * STEPS:
            raise AssertionError(f"floor wrote {rows} rows")
    finally:
        await engine.dispose()
    return {
        "sequential_s": elapsed,
        "sequential_cpu_s": elapsed_cpu,
        "sequential_n": N,
        "in_flight_s": in_flight,
        "in_flight_n": batches * IN_FLIGHT,
        "commits_per_saga": commits,
        "statements_per_saga": statements,
    }


# --- one database, one table ----------------------------------------------------------------


def _sync_url(url: str) -> str:
    """The SQLAlchemy URL DBOS wants (sync drivers: psycopg, sqlite3)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    driver = "postgresql" if parsed.get_backend_name() == "postgresql" else "sqlite"
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


async def _fresh(backend: str) -> str:
    from benchmarks.support import create_pg_database, sqlite_url

    return (
        await create_pg_database("dotmac_bench_sagas") if backend == "postgresql" else sqlite_url()
    )


async def _drop(backend: str, url: str) -> None:
    from benchmarks.support import drop_pg_database

    if backend == "postgresql":
        await drop_pg_database(url)


async def _measure(backend: str) -> dict[str, Any]:
    """Every case on its own fresh database of ``backend``."""
    out: dict[str, Any] = {}
    url = await _fresh(backend)
    try:
        out["dotmac"] = await _dotmac(url)
    finally:
        await _drop(backend, url)
    url = await _fresh(backend)
    try:
        out["floor"] = await _floor(url)
    finally:
        await _drop(backend, url)
    variants = [("default", False)] + ([("wal", True)] if backend == "sqlite" else [])
    for name, wal in variants:
        url = await _fresh(backend)
        try:
            out[f"dbos_{name}"] = await asyncio.to_thread(
                _run_dbos, _sync_url(url), f"{backend}-{name}", wal=wal
            )
        except RuntimeError as exc:
            # e.g. a DBOS version without SQLite system databases: say so, keep going.
            out.setdefault("dbos_errors", []).append(str(exc).strip().splitlines()[-1])
        finally:
            await _drop(backend, url)
    return out


def _median_case(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Every case's numbers as their median over the rounds (this machine's noise is ±20%)."""
    merged: dict[str, Any] = {}
    for case, first in rounds[0].items():
        if not isinstance(first, dict):
            merged[case] = first
            continue
        runs = [r[case] for r in rounds if case in r]
        merged[case] = {
            key: statistics.median(run[key] for run in runs)
            if isinstance(value, int | float)
            else value
            for key, value in first.items()
        }
    return merged


def _sequential_ratio(m: dict[str, Any]) -> float:
    """dotmac's sequential rate over DBOS's best sequential rate, in one round."""
    dotmac = m["dotmac"]["sequential_n"] / m["dotmac"]["sequential_s"]
    dbos = [
        N / min(d["sync_s"], d["async_s"])
        for d in (m.get("dbos_default"), m.get("dbos_wal"))
        if d is not None
    ]
    return dotmac / max(dbos) if dbos else float("nan")


def _rate(seconds: float, sagas: int) -> tuple[float, float]:
    """Sagas per second and milliseconds per step."""
    return sagas / seconds, seconds / (sagas * STEPS) * 1000


def _table(backend: str, m: dict[str, Any]) -> dict[str, float]:
    from benchmarks.support import print_table

    rows: list[tuple[str, float, float]] = []
    d, floor = m["dotmac"], m["floor"]
    rows.append(("dotmac sequential", *_rate(d["sequential_s"], d["sequential_n"])))
    rows.append((f"dotmac {IN_FLIGHT} in flight", *_rate(d["in_flight_s"], d["in_flight_n"])))
    references: list[float] = []
    cpu: list[str] = []
    for name in ("default", "wal"):
        dbos = m.get(f"dbos_{name}")
        if dbos is None:
            continue
        how = ""
        if backend == "sqlite":
            how = {
                "default": " [its defaults: rollback journal, synchronous=FULL]",
                "wal": " [WAL, synchronous=NORMAL, as dotmac]",
            }[name]
        sync_rate = _rate(dbos["sync_s"], N)
        async_rate = _rate(dbos["async_s"], N)
        kind = "sync" if sync_rate[0] >= async_rate[0] else "async"
        best = sync_rate if kind == "sync" else async_rate
        rows.append((f"DBOS sequential ({kind}){how}", *best))
        references.append(best[0])
        rows.append(
            (
                f"DBOS {IN_FLIGHT} in flight (async){how}",
                *_rate(dbos["async_inflight_s"], dbos["async_inflight_n"]),
            )
        )
        label = f"DBOS {name}" if backend == "sqlite" else "DBOS"
        cpu.append(f"{label} {dbos[kind + '_cpu_s'] / N * 1000:.1f}")
    rows.append(("floor: bare INSERT+COMMIT per step", *_rate(floor["sequential_s"], N)))
    rows.append(
        (f"floor {IN_FLIGHT} in flight", *_rate(floor["in_flight_s"], floor["in_flight_n"]))
    )
    for error in m.get("dbos_errors", []):
        print(f"\n  DBOS could not run on {backend}: {error}")
    if not references:
        print(f"  (no DBOS reference on {backend}: ratios omitted)")
    # The reference is DBOS's best sequential rate (on SQLite: with dotmac's own settings).
    reference = max(references, default=float("nan"))
    print_table(
        f"{backend}: 5-step no-op saga, {N} sagas per case (after {WARMUP} warm-up); "
        f"ratio = sagas/s / DBOS best sequential ({reference:,.0f}/s)",
        ["case", "sagas/s", "ms/step", "ratio vs DBOS"],
        [
            (name, f"{rate:,.0f}", f"{ms:.2f}", f"{rate / reference:.2f}x")
            for name, rate, ms in rows
        ],
    )
    cpu = [
        f"dotmac {d['sequential_cpu_s'] / N * 1000:.1f}",
        *cpu,
        f"floor {floor['sequential_cpu_s'] / N * 1000:.1f}",
    ]
    print(f"  client CPU ms per saga, sequential (all threads): {', '.join(cpu)}")
    print(
        f"  per saga: dotmac {d['commits_per_saga']:g} commits, "
        f"{d['statements_per_saga']:g} statements; floor {floor['commits_per_saga']:g} commits, "
        f"{floor['statements_per_saga']:g} statements"
        + (" (statements include BEGIN IMMEDIATE, not PRAGMAs)" if backend == "sqlite" else ""),
        flush=True,
    )
    return {
        "sequential": rows[0][1] / reference,
        "in_flight": rows[1][1] / reference,
        "floor": _rate(floor["sequential_s"], N)[0] / reference,
    }


def main() -> None:
    from importlib.metadata import version

    started = time.perf_counter()
    print(
        f"dbos {version('dbos')}; {N} sagas per case after {WARMUP} warm-up; every number is "
        f"the median of {ROUNDS} rounds (each round: every case once, on fresh databases)",
        flush=True,
    )
    verdicts = []
    for backend in ("postgresql", "sqlite"):
        rounds = [asyncio.run(_measure(backend)) for _ in range(ROUNDS)]
        verdicts.append((backend, _table(backend, _median_case(rounds))))
        spread = ", ".join(f"{_sequential_ratio(r):.2f}x" for r in rounds)
        print(f"  {backend}: dotmac/DBOS sequential in each of the {ROUNDS} rounds: {spread}")
    print()
    for backend, ratio in verdicts:
        if ratio["sequential"] != ratio["sequential"]:  # NaN: DBOS did not run here
            print(f"{backend}: no DBOS reference, target not checked")
            continue
        verdict = ", ".join(
            f"{what} {ratio[key]:.2f}x ({'meets' if ratio[key] >= TARGET else 'MISSES'})"
            for what, key in (("sequential", "sequential"), (f"{IN_FLIGHT} in flight", "in_flight"))
        )
        print(
            f"{backend}: dotmac vs DBOS: {verdict} the {TARGET:g}x target; "
            f"the 5-commit floor itself is {ratio['floor']:.2f}x"
        )
    print(f"total {time.perf_counter() - started:.0f}s")
