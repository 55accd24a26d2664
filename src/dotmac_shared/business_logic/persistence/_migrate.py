"""Programmatic Alembic migrations, so a new user needs no separate set-up step.

The schema comes in branches of one Alembic history, each with its own label and directory of
revision scripts, all recorded in one version table (one row per branch):

- ``dotmac_framework``: the framework's own tables (idempotency records, saga executions and
  steps, the policy decision log), in ``persistence/migrations/versions/``;
- ``dotmac_isp``: the ISP domain's tables (tenants, customers, billing, ...), in
  ``operations/migrations/``;
- ``dotmac_http``: the HTTP layer's API keys, in ``http/migrations/`` (found by path, so
  migrating needs none of the web libraries).

A user who wants only idempotency or sagas migrates ``schema="framework"`` and gets only the
framework's tables. Another package adds a branch of its own with
:func:`register_schema_branch`; ``schema="all"`` then migrates it too.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import URL, Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from dotmac_shared.business_logic.exceptions import (
    InvalidInputError,
    PersistenceError,
    SchemaVersionError,
)
from dotmac_shared.business_logic.persistence._driver import DRIVER_ERRORS
from dotmac_shared.business_logic.persistence._session import (
    create_engine,
    database_error,
    display_database_url,
)

__all__ = [
    "FRAMEWORK_BRANCH",
    "HTTP_BRANCH",
    "ISP_BRANCH",
    "VERSION_TABLE",
    "SchemaBranch",
    "SchemaSelection",
    "current_revisions",
    "head_revisions",
    "register_schema_branch",
    "schema_branches",
    "upgrade_database",
]

#: Alembic's version table, named apart from any application's own ``alembic_version``.
VERSION_TABLE = "dotmac_bl_alembic_version"
#: Label of the framework's branch: idempotency, sagas, the policy decision log.
FRAMEWORK_BRANCH = "dotmac_framework"
#: Label of the ISP domain's branch: tenants, customers, services, billing, resources.
ISP_BRANCH = "dotmac_isp"
#: Label of the HTTP layer's branch: API keys.
HTTP_BRANCH = "dotmac_http"

#: Which branches to migrate: ``"all"`` (every registered branch), ``"framework"`` (the
#: framework's only), or a sequence of branch labels (the framework's is always included).
SchemaSelection = Literal["all", "framework"] | Sequence[str]

# Any fixed 64-bit number; all processes migrating one PostgreSQL database serialize on it.
_PG_MIGRATION_LOCK = 0x646F746D6163
#: The revisions of the single pre-release history (before the branches). A database at one
#: of them has tables without the ``dotmac_`` prefix that no revision here knows how to rename.
_PRE_RELEASE_REVISIONS = frozenset(
    {
        "0001_idempotency",
        "0002_sagas",
        "0003_commissions",
        "0004_domain",
        "0005_invoice_keyset",
        "0006_billing_attempts",
        "0007_policy_decisions",
    }
)


@dataclass(frozen=True)
class SchemaBranch:
    """One branch of the schema: an Alembic branch label and its revision scripts.

    Attributes:
        label: The Alembic branch label of the branch's first revision, e.g. ``"dotmac_isp"``.
        location: The directory holding the branch's revision scripts.
        description: What the branch's tables are for (shown by ``dotmac-bl db upgrade``).
    """

    label: str
    location: str
    description: str = ""


# Registration order is migration order: the framework's branch first.
_BRANCHES: dict[str, SchemaBranch] = {}
_BRANCHES_LOCK = threading.Lock()


def register_schema_branch(
    label: str, location: str | os.PathLike[str], description: str = ""
) -> SchemaBranch:
    """Add a branch of revision scripts that ``schema="all"`` migrates after the others.

    The branch's first revision must carry ``branch_labels = (label,)`` and
    ``down_revision = None``; its tables should be named ``dotmac_<name>`` too. Registering the
    same label at the same location again is harmless.

    Args:
        label: The branch label.
        location: The directory of the branch's revision scripts.
        description: What the branch's tables are for.

    Raises:
        InvalidInputError: ``label`` is already registered at another location.

    Example:
        >>> register_schema_branch("dotmac_http", "/path/to/http/migrations")  # doctest: +SKIP
    """
    branch = SchemaBranch(label, os.fspath(location), description)
    with _BRANCHES_LOCK:
        known = _BRANCHES.get(label)
        if known is not None and known.location != branch.location:
            raise InvalidInputError(
                f"schema branch {label!r} is already registered at {known.location}",
                field="label",
            )
        _BRANCHES.setdefault(label, branch)
        return _BRANCHES[label]


def schema_branches() -> tuple[SchemaBranch, ...]:
    """Return every registered branch, in migration order (the framework's first)."""
    with _BRANCHES_LOCK:
        return tuple(_BRANCHES.values())


# The built-in branches. Their locations are found from the top-level package, which does not
# import the operations package (and everything it imports) just to find a directory.
_PACKAGE = resources.files("dotmac_shared.business_logic")
register_schema_branch(
    FRAMEWORK_BRANCH,
    str(_PACKAGE / "persistence" / "migrations" / "versions"),
    "idempotency records, saga executions and steps, policy decisions",
)
register_schema_branch(
    ISP_BRANCH,
    str(_PACKAGE / "operations" / "migrations"),
    "tenants, customers, plans, services, billing, payments, outbox, resources, commissions",
)
register_schema_branch(
    HTTP_BRANCH,
    str(_PACKAGE / "http" / "migrations"),
    "API keys of the HTTP API (hashed)",
)


def _selected(schema: SchemaSelection) -> list[SchemaBranch]:
    """The branches ``schema`` names, in migration order."""
    branches = schema_branches()
    if schema == "all":
        return list(branches)
    if schema == "framework":
        return [b for b in branches if b.label == FRAMEWORK_BRANCH]
    if isinstance(schema, str):
        raise InvalidInputError(
            f"schema must be 'all', 'framework' or a list of branch labels, not {schema!r}",
            field="schema",
        )
    wanted = {FRAMEWORK_BRANCH, *schema}
    unknown = sorted(wanted - {b.label for b in branches})
    if unknown:
        raise InvalidInputError(
            f"unknown schema branch {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(b.label for b in branches)}",
            field="schema",
        )
    return [b for b in branches if b.label in wanted]


def _alembic_config() -> Config:
    cfg = Config()
    env = resources.files("dotmac_shared.business_logic.persistence") / "migrations"
    # ConfigParser interpolates "%": a path holding one must escape it.
    cfg.set_main_option("script_location", str(env).replace("%", "%%"))
    locations = os.pathsep.join(b.location for b in schema_branches())
    cfg.set_main_option("version_locations", locations.replace("%", "%%"))
    # Alembic 1.16 renamed the option; each version reads the name it knows and warns about none.
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_path_separator", "os")
    return cfg


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_alembic_config())


def head_revisions(schema: SchemaSelection = "all") -> dict[str, str]:
    """Return the newest revision of each selected branch, by branch label.

    Example:
        >>> head_revisions("framework")
        {'dotmac_framework': 'f0002_saga_events'}
    """
    script = _script()
    heads: dict[str, str] = {}
    for branch in _selected(schema):
        revision = script.get_revision(f"{branch.label}@head")
        if revision is None:  # pragma: no cover - every registered branch has a revision
            raise PersistenceError(f"schema branch {branch.label!r} has no migrations")
        heads[branch.label] = revision.revision
    return heads


def _branch_of(script: ScriptDirectory, revision: str) -> str:
    """The registered branch a known revision belongs to (or the revision, if in none).

    Alembic gives every revision the labels of the revisions it descends from.
    """
    found = script.get_revision(revision)
    labels = set(found.branch_labels) if found is not None else set()
    return next((b.label for b in schema_branches() if b.label in labels), revision)


def _check_revisions(heads: Sequence[str], script: ScriptDirectory, url: URL) -> None:
    """Refuse a database whose version table holds revisions this release does not know."""
    pre_release = sorted(h for h in heads if h in _PRE_RELEASE_REVISIONS)
    shown = display_database_url(url)
    if pre_release:
        raise SchemaVersionError(
            f"database {shown} was created by a pre-release schema of dotmac-business-logic "
            f"(revision {', '.join(pre_release)}, tables without the dotmac_ prefix) that "
            f"cannot be migrated; create a new database, or drop its tables and the "
            f"{VERSION_TABLE} table, then migrate again",
            operation="migrate",
            metadata={"url": shown, "revisions": list(heads)},
        )
    known = {revision.revision for revision in script.walk_revisions()}
    unknown = sorted(h for h in heads if h not in known)
    if unknown:
        raise SchemaVersionError(
            f"database {shown} is at schema revision {', '.join(unknown)}, unknown to this "
            f"release of dotmac-business-logic (made by a newer release, or by a package "
            f"whose schema branch is not registered here: register_schema_branch())",
            operation="migrate",
            metadata={"url": shown, "revisions": list(heads)},
        )


def _heads(connection: Connection) -> tuple[str, ...]:
    ctx = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return tuple(ctx.get_current_heads())


def _current(connection: Connection) -> dict[str, str]:
    heads = _heads(connection)
    script = _script()
    _check_revisions(heads, script, connection.engine.url)
    found = {_branch_of(script, head): head for head in heads}
    order = [b.label for b in schema_branches()]
    return {
        label: found[label]
        for label in sorted(found, key=lambda x: order.index(x) if x in order else len(order))
    }


def _upgrade(connection: Connection, branches: Sequence[SchemaBranch]) -> dict[str, str]:
    cfg = _alembic_config()
    _check_revisions(_heads(connection), ScriptDirectory.from_config(cfg), connection.engine.url)
    cfg.attributes["connection"] = connection
    for branch in branches:
        command.upgrade(cfg, f"{branch.label}@head")
    return _current(connection)


#: What opening a connection may raise: SQLAlchemy's errors and the drivers' own.
_CONNECT_ERRORS: tuple[type[Exception], ...] = (SQLAlchemyError, *DRIVER_ERRORS)


@asynccontextmanager
async def _connected(engine: AsyncEngine, operation: str) -> AsyncIterator[AsyncConnection]:
    """A connection of ``engine``; failing to open one is a :class:`PersistenceError`."""
    try:
        conn = await engine.connect()
    except _CONNECT_ERRORS as exc:
        # Driver errors: asyncpg's refused, reset or timed-out sockets and unknown host
        # names reach us untranslated by SQLAlchemy, and so (before SQLAlchemy 2.1) does
        # what the server answers at connect, such as a database that does not exist.
        raise database_error(engine.url, exc, operation=operation) from exc
    try:
        yield conn
    finally:
        await conn.close()


async def _run(url: str | URL | None, branches: Sequence[SchemaBranch]) -> dict[str, str]:
    engine = create_engine(url)
    try:
        # One transaction: on PostgreSQL DDL is transactional, and the advisory lock makes
        # concurrent migrators wait; on SQLite BEGIN IMMEDIATE serializes them the same way.
        # The version table is read under the lock, so each migrator sees what the previous
        # one committed and finds nothing left to do.
        async with _connected(engine, "migrate") as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK}
                )
            result: dict[str, str] = await conn.run_sync(_upgrade, branches)
            return result
    except (SQLAlchemyError, OSError) as exc:
        raise database_error(engine.url, exc, doing="migrate", operation="migrate") from exc
    finally:
        await engine.dispose()


async def _read_current(url: str | URL | None) -> dict[str, str]:
    engine = create_engine(url)
    try:
        async with _connected(engine, "read_migration_state") as conn:
            result: dict[str, str] = await conn.run_sync(_current)
            return result
    except (SQLAlchemyError, OSError) as exc:
        raise database_error(
            engine.url, exc, doing="read the migration state of", operation="read_migration_state"
        ) from exc
    finally:
        await engine.dispose()


def _in_thread(coro_factory: Any) -> Any:
    """Run a coroutine to completion on a private loop, even from inside a running loop."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = asyncio.run(coro_factory())
        except BaseException as exc:  # re-raised in the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=target, name="dotmac-migrate")
    worker.start()
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def upgrade_database(
    url: str | URL | None = None, *, schema: SchemaSelection = "all"
) -> dict[str, str]:
    """Migrate the database at ``url`` to the newest revision of each selected branch.

    Idempotent and safe to call from several processes at once. Synchronous, so it can run
    at import time or inside a running event loop (it uses a private thread). Branches not
    selected are left as they are: migrating ``"framework"`` then ``"all"`` adds the ISP
    domain's tables to the framework's.

    Args:
        url: A database URL; defaults to ``$DOTMAC_DATABASE_URL`` or the SQLite default.
        schema: ``"all"`` (every registered branch: the framework's and the ISP domain's),
            ``"framework"`` (only the framework's tables), or a sequence of branch labels.

    Returns:
        Every branch the database now holds, by label, with its revision (branches migrated
        earlier and not selected now included).

    Raises:
        PersistenceError: The database is unreachable or a migration failed; the message
            names the database (password masked) and the cause.
        SchemaVersionError: The database is at a revision this release does not know, such
            as one of the pre-release schema; nothing is changed.
        InvalidInputError: ``schema`` names no known branch.

    Example:
        >>> upgrade_database("sqlite:///app.db", schema="framework")  # doctest: +SKIP
        {'dotmac_framework': 'f0002_saga_events'}
    """
    branches = _selected(schema)
    result: dict[str, str] = _in_thread(lambda: _run(url, branches))
    return result


def current_revisions(url: str | URL | None = None) -> dict[str, str]:
    """Return the revision of each branch the database at ``url`` holds, by branch label.

    Empty if the database was never migrated; ``{"dotmac_framework": ...}`` alone if it was
    migrated for the framework only.

    Raises:
        PersistenceError: The database is unreachable; the message names it (password masked).
        SchemaVersionError: The database is at a revision this release does not know.
    """
    result: dict[str, str] = _in_thread(lambda: _read_current(url))
    return result
