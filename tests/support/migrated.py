"""Migrated databases for tests, copied from a template migrated once per test session.

Running every Alembic revision for each test cost more than most tests themselves: on
PostgreSQL a copy of a migrated database (``CREATE DATABASE ... TEMPLATE``) is made in a
fraction of the time the migrations take, and on SQLite a migrated file is copied. The copy
has exactly the template's schema and version table, so ``create_session_factory`` finds it
at the head and has nothing left to do. The migrations themselves still run for real, on
empty databases, in ``tests/persistence/test_migrations.py`` and wherever a test migrates a
database of its own.

A test's PostgreSQL database is dropped in the background (:meth:`MigratedTemplates.drop_later`)
while the next test runs: dropping waits on the server's disk, and nothing reads the
database again. The session's end waits for every drop.

The templates are built on first use in each test process (each pytest-xdist worker has its
own, so no two processes ever copy or build the same one) and dropped when the session ends,
so a change to the migrations is always picked up. Their names carry the migration heads,
which shows in ``pg_database`` what schema a leftover template holds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import shutil
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy.engine import make_url

from dotmac_shared.business_logic.persistence import head_revisions, upgrade_database
from tests.support.services import (
    POSTGRES_URL,
    create_postgres_database,
    drop_postgres_database,
    sqlite_url,
)

__all__ = ["MigratedTemplates", "run_in_new_loop"]

T = TypeVar("T")


def run_in_new_loop(coro_factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine on a private event loop in a thread, even under a running loop."""
    outcome: dict[str, T] = {}
    failure: list[BaseException] = []

    async def main() -> None:
        outcome["value"] = await coro_factory()

    def target() -> None:
        try:
            asyncio.run(main())
        except BaseException as exc:  # re-raised in the caller's thread below
            failure.append(exc)

    worker = threading.Thread(target=target, name="test-template")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return outcome["value"]


def _heads_digest() -> str:
    heads = ",".join(f"{label}={rev}" for label, rev in sorted(head_revisions().items()))
    return hashlib.sha256(heads.encode()).hexdigest()[:12]


class MigratedTemplates:
    """One migrated SQLite file and one migrated PostgreSQL database, copied per test."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._sqlite_template: Path | None = None
        self._postgres_template: str | None = None
        self._drops: list[concurrent.futures.Future[None]] = []
        # The loop of the background drops, on a thread of its own: a test's loop is closed
        # when the test ends, before its database's drop is done.
        self._drop_loop: asyncio.AbstractEventLoop | None = None
        self._drop_thread: threading.Thread | None = None

    def sqlite_copy(self, directory: Path) -> str:
        """Return the URL of a migrated SQLite file of its own in ``directory``."""
        if self._sqlite_template is None:
            template = self._directory / f"template-{_heads_digest()}.db"
            upgrade_database(f"sqlite+aiosqlite:///{template}")
            # A cleanly closed WAL database has no -wal file left: the file alone is the copy.
            if template.with_name(template.name + "-wal").exists():  # pragma: no cover
                raise RuntimeError(f"{template} was left with a write-ahead log")
            self._sqlite_template = template
        url = sqlite_url(directory)
        shutil.copyfile(self._sqlite_template, directory / "dotmac.db")
        return url

    async def postgres_copy(self) -> str:
        """Create a migrated PostgreSQL database of its own and return its URL."""
        # Fixtures of one process run one at a time (each test on its own event loop), so
        # the template is built once without a lock.
        if self._postgres_template is None:
            url = await create_postgres_database(prefix=f"dotmac_template_{_heads_digest()}")
            try:
                upgrade_database(url)
            except BaseException:
                await drop_postgres_database(url)
                raise
            self._postgres_template = make_url(url).database
        # The template has no connection open (its engine was disposed after migrating),
        # which CREATE DATABASE ... TEMPLATE requires.
        return await create_postgres_database(template=self._postgres_template)

    def drop_later(self, url: str) -> None:
        """Drop the PostgreSQL database at ``url`` in the background; :meth:`drop` waits."""
        if self._drop_loop is None:
            self._drop_loop = asyncio.new_event_loop()
            self._drop_thread = threading.Thread(
                target=self._drop_loop.run_forever, name="test-database-drops", daemon=True
            )
            self._drop_thread.start()
        self._drops = [drop for drop in self._drops if not drop.done() or drop.exception()]
        self._drops.append(
            asyncio.run_coroutine_threadsafe(drop_postgres_database(url), self._drop_loop)
        )

    async def drop(self) -> None:
        """Finish the background drops, then drop the PostgreSQL template.

        The SQLite template goes with its temporary directory. A background drop that
        failed is raised here.
        """
        try:
            for drop in self._drops:
                await asyncio.wrap_future(drop)
        finally:
            self._drops = []
            if self._drop_loop is not None and self._drop_thread is not None:
                self._drop_loop.call_soon_threadsafe(self._drop_loop.stop)
                self._drop_thread.join()
                self._drop_loop.close()
                self._drop_loop = self._drop_thread = None
        if self._postgres_template is not None:
            url = make_url(POSTGRES_URL).set(database=self._postgres_template)
            await drop_postgres_database(url.render_as_string(hide_password=False))
            self._postgres_template = None
