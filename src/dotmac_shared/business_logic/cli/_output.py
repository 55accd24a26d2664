"""What every ``dotmac-bl`` command shares: consoles, global options, errors, input files.

Errors follow one rule: a failure prints one line to stderr and exits non-zero (1 for a
:class:`BusinessLogicError` or any other failure, 2 for usage errors, which Typer reports),
never a traceback unless the root option ``--debug`` is given.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sys
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn, TypeVar

import typer
import yaml
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.exceptions import BusinessLogicError, InvalidInputError
from dotmac_shared.business_logic.observability._log import ContextFilter, JsonFormatter
from dotmac_shared.business_logic.persistence._session import (
    DATABASE_URL_ENV,
    create_session_factory,
    database_error,
    engine_of,
    sqlite_file,
)

__all__ = [
    "MAX_INPUT_FILE_BYTES",
    "CliState",
    "DatabaseUrl",
    "configure_logging",
    "console",
    "err_console",
    "fail",
    "format_value",
    "handle_errors",
    "load_mapping_file",
    "one_line",
    "reset_logging",
    "run_async",
    "session_factory",
    "state",
]

T = TypeVar("T")

#: Largest input file ``policy eval`` reads (policy inputs are records, not data sets).
MAX_INPUT_FILE_BYTES: Final = 10 * 1024 * 1024

console = Console()
err_console = Console(stderr=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", envvar=DATABASE_URL_ENV, help="SQLite file by default."),
]


@dataclass
class CliState:
    """The root options of one invocation (set by the root callback).

    Attributes:
        debug: Show tracebacks instead of one-line errors.
        log_json: Logging is configured to write JSON lines to stderr.
        log_handler: The JSON handler added to the root logger, removed when it ends.
        saved_root_level: The root logger's level before, restored when it ends.
    """

    debug: bool = False
    log_json: bool = False
    log_handler: logging.Handler | None = field(default=None, repr=False)
    saved_root_level: int = field(default=logging.WARNING, repr=False)


#: The state of the current invocation; the root callback replaces its fields each time.
state = CliState()


def one_line(text: str) -> str:
    """Collapse ``text`` (say, a multi-line YAML parser message) into one line."""
    return " ".join(str(text).split())


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``code``.

    Raises:
        typer.Exit: Always.
    """
    err_console.print(
        f"[bold red]error[/]: {escape(one_line(message))}", soft_wrap=True, highlight=False
    )
    raise typer.Exit(code)


@contextmanager
def handle_errors() -> Iterator[None]:
    """Turn failures inside the block into one line on stderr and exit code 1.

    With ``--debug`` the exception propagates (and its traceback is shown).

    Raises:
        typer.Exit: A failure happened and ``--debug`` is off.
    """
    try:
        yield
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except BusinessLogicError as exc:
        if state.debug:
            raise
        fail(exc.message)
    except Exception as exc:
        if state.debug:
            raise
        fail(f"{type(exc).__name__}: {exc} (run with --debug for the traceback)")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end inside :func:`handle_errors`."""
    with handle_errors():
        return asyncio.run(coroutine)
    raise AssertionError("unreachable")  # pragma: no cover - handle_errors raises or returns


@asynccontextmanager
async def session_factory(
    url: str | None, *, must_exist: bool = False
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """A migrated session factory for ``url`` (or the default), disposed on exit.

    Args:
        url: The ``--database-url`` (``None``: ``$DOTMAC_DATABASE_URL`` or the SQLite default).
        must_exist: The command only reads: an SQLite file that does not exist is an error,
            not a new empty database (which would only hide a mistyped path).

    Raises:
        InvalidInputError: ``must_exist`` is set and the SQLite file does not exist.
        PersistenceError: The database cannot be reached, migrated or used; the message
            names it with its password masked.
    """
    path = sqlite_file(url) if must_exist else None
    if path is not None and not path.exists():
        raise InvalidInputError(
            f"no database at {path}: the file does not exist (this command only reads; "
            "check --database-url, or create the database with `dotmac-bl db upgrade`)",
            field="database_url",
        )
    factory = create_session_factory(url)
    engine = engine_of(factory)
    try:
        yield factory
    except (SQLAlchemyError, OSError) as exc:
        # The database went away after the migration connected (asyncpg's refused or reset
        # sockets are OSErrors): still one line that names it, password masked.
        raise database_error(engine.url, exc, doing="use") from exc
    finally:
        await engine.dispose()


def configure_logging(*, log_json: bool, debug: bool) -> None:
    """Apply the root options to :mod:`logging` for this invocation.

    ``--log-json`` sends every record (INFO and up, DEBUG with ``--debug``) to stderr as a
    JSON line carrying ``tenant_id``, ``correlation_id`` and ``saga_id``.
    """
    state.debug = debug
    state.log_json = log_json
    if not log_json:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    state.log_handler, state.saved_root_level = handler, root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)


def reset_logging() -> None:
    """Undo :func:`configure_logging` (called when the invocation ends)."""
    handler = state.log_handler
    if handler is not None:
        root = logging.getLogger()
        root.removeHandler(handler)
        root.setLevel(state.saved_root_level)
        handler.close()
        state.log_handler = None


def load_mapping_file(path: Path, *, what: str = "input") -> dict[str, Any]:
    """Read a JSON (``.json``) or YAML (anything else) file holding one mapping.

    Args:
        path: The file.
        what: What the file is, for messages (``"input"``, ``"context"``).

    Raises:
        InvalidInputError: The file is missing, unreadable, too large, malformed, or does
            not hold a mapping; the message names the file.
    """
    try:
        if not path.is_file():
            problem = "is a directory" if path.is_dir() else "no such file"
            raise InvalidInputError(f"{what} file {path}: {problem}", field=what)
        if path.stat().st_size > MAX_INPUT_FILE_BYTES:
            raise InvalidInputError(
                f"{what} file {path} is larger than {MAX_INPUT_FILE_BYTES} bytes", field=what
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read {what} file {path}: {exc}", field=what) from exc
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{what} file {path}: invalid JSON: {exc}", field=what) from exc
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidInputError(f"{what} file {path}: invalid YAML: {exc}", field=what) from exc
    if not isinstance(data, dict):
        raise InvalidInputError(
            f"{what} file {path} must hold a mapping (an object), got {type(data).__name__}",
            field=what,
        )
    return data


def format_value(value: Any, *, limit: int = 60) -> str:
    """A short, readable rendering of a value for a table cell."""
    if value is None:
        return "-"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=str, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
