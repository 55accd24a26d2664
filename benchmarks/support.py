"""Shared benchmark plumbing: fresh databases, timing, tables with ratios."""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

POSTGRES_URL = os.environ.get(
    "DOTMAC_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("DOTMAC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _admin_dsn() -> str:
    return make_url(POSTGRES_URL).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_pg_database(prefix: str = "dotmac_bench") -> str:
    """Create an empty PostgreSQL database; returns its SQLAlchemy async URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(_admin_dsn())
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


async def drop_pg_database(url: str) -> None:
    """Drop a database made by :func:`create_pg_database`."""
    conn = await asyncpg.connect(_admin_dsn())
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    finally:
        await conn.close()


def sqlite_url() -> str:
    """A fresh SQLite file URL in a temporary directory."""
    return f"sqlite+aiosqlite:///{Path(tempfile.mkdtemp(prefix='dotmac_bench_')) / 'bench.db'}"


async def per_call_us(fn: Callable[[], Awaitable[object]], n: int, repeat: int = 3) -> float:
    """Best-of-``repeat`` mean microseconds per awaited call, over ``n`` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            await fn()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def sync_per_call_us(fn: Callable[[], object], n: int, repeat: int = 5) -> float:
    """Best-of-``repeat`` mean microseconds per call over ``n`` calls (the machine is shared)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n * 1e6)
    return best


def median_us(samples: Sequence[float]) -> float:
    """Median of samples given in seconds, as microseconds."""
    return statistics.median(samples) * 1e6


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print a plain fixed-width table (copied into issue notes as is)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for i, row in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if j else c.ljust(w)
                for j, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))


def run(coro: Awaitable[None]) -> None:
    """Run a benchmark coroutine."""
    asyncio.run(coro)  # type: ignore[arg-type]


class SqlCounter:
    """Count transactions and statements an async engine runs while inside ``with``.

    Example:
        >>> with SqlCounter(engine) as counted:  # doctest: +SKIP
        ...     await work()
        >>> counted.commits, counted.statements  # doctest: +SKIP
    """

    def __init__(self, engine: object) -> None:
        self._target = getattr(engine, "sync_engine", engine)
        self.commits = 0
        self.rollbacks = 0
        self.statements = 0

    def _on_commit(self, *_args: object) -> None:
        self.commits += 1

    def _on_rollback(self, *_args: object) -> None:
        self.rollbacks += 1

    def _on_statement(self, *_args: object) -> None:
        self.statements += 1

    def __enter__(self) -> SqlCounter:
        from sqlalchemy import event

        event.listen(self._target, "commit", self._on_commit)
        event.listen(self._target, "rollback", self._on_rollback)
        event.listen(self._target, "before_cursor_execute", self._on_statement)
        return self

    def __exit__(self, *_exc: object) -> None:
        from sqlalchemy import event

        event.remove(self._target, "commit", self._on_commit)
        event.remove(self._target, "rollback", self._on_rollback)
        event.remove(self._target, "before_cursor_execute", self._on_statement)
