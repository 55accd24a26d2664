"""Database trouble on the command line: one line naming the masked URL, never the password.

Also: a command that only reads refuses an SQLite path that does not exist instead of
creating an empty database there; a command that writes still creates it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import pytest
import typer.main
from sqlalchemy.engine import make_url

from dotmac_shared.business_logic.cli import app
from tests.cli.helpers import one_error_line
from tests.support.services import create_postgres_database, drop_postgres_database, free_port

SECRET = "s3cret-Pa55"
#: Commands that only read: they must not create a database.
READ_COMMANDS = [("saga", "list"), ("saga", "show"), ("billing", "report")]
#: Commands that write: on a new SQLite path they create (and migrate) the database.
WRITE_COMMANDS = [("db", "upgrade"), ("idempotency", "purge"), ("worker",)]
#: Options a command needs to end on its own instead of serving until stopped.
FINITE = {
    ("worker",): ["--once"],
    ("demo",): ["--customers", "0"],
    # Somewhere to deliver (nothing listens there: the database fails first).
    ("notifications", "relay"): ["--once", "--smtp-url", "smtp://127.0.0.1:9"],
}


def last_full_month() -> str:
    first = dt.datetime.now(dt.UTC).date().replace(day=1)
    previous = first - dt.timedelta(days=1)
    return f"{previous.year:04d}-{previous.month:02d}"


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    subcommands = getattr(command, "commands", None)
    if subcommands:
        for name, sub in sorted(subcommands.items()):
            yield from _commands(sub, (*path, name))
    else:
        yield path, command


#: Every command that takes --database-url, found in the command tree (new ones included).
DATABASE_COMMANDS = {
    path: command
    for path, command in _commands(typer.main.get_command(app))
    if any(param.name == "database_url" for param in command.params)
}


def invocation(path: tuple[str, ...], url: str) -> list[str]:
    """``path`` with sample values for its required parameters, and ``--database-url url``."""
    samples = {"tenant": "tenant123", "period": last_full_month()}
    argv = [*path, *FINITE.get(path, [])]
    for param in DATABASE_COMMANDS[path].params:
        if param.name == "all_tenants":  # saga commands need a tenant scope
            argv.append("--all-tenants")
        if not param.required:
            continue
        value = samples.get(param.name or "", "x")
        if param.param_type_name == "option":
            argv += [param.opts[0], value]
        else:
            argv.append(value)
    return [*argv, "--database-url", url]


def error_line(stderr: str) -> str:
    """The one error line, apart from the JSON log lines of ``--log-json``."""
    return one_error_line("\n".join(x for x in stderr.splitlines() if not x.startswith("{")))


def test_every_read_and_write_command_takes_a_database_url():
    assert set(READ_COMMANDS) | set(WRITE_COMMANDS) <= set(DATABASE_COMMANDS)


@pytest.mark.parametrize("path", sorted(DATABASE_COMMANDS), ids=" ".join)
def test_one_line_names_the_masked_url_and_the_cause_when_postgresql_is_unreachable(
    runner, path, caplog
):
    caplog.set_level(logging.DEBUG)
    port = free_port()
    url = f"postgresql://app:{SECRET}@127.0.0.1:{port}/x"
    result = runner.invoke(app, ["--log-json", *invocation(path, url)])
    assert result.exit_code == 1, result.output
    line = error_line(result.stderr)
    assert line.startswith(
        f"error: cannot connect to database postgresql+asyncpg://app:***@127.0.0.1:{port}/x: "
        "ConnectionRefusedError"
    ), line
    assert SECRET not in result.stdout
    assert SECRET not in result.stderr
    assert SECRET not in caplog.text


@pytest.mark.parametrize("path", sorted(DATABASE_COMMANDS), ids=" ".join)
def test_one_line_names_the_file_when_the_sqlite_folder_does_not_exist(runner, path, tmp_path):
    database = tmp_path / "no-such-folder" / "x.db"
    result = runner.invoke(app, invocation(path, f"sqlite:///{database}"))
    assert result.exit_code == 1, result.output
    assert str(database) in error_line(result.stderr)
    assert not database.parent.exists()


def run_main(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the console-script entry point in a fresh process (as `dotmac-bl` would)."""
    return subprocess.run(
        [sys.executable, "-c", "from dotmac_shared.business_logic.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_db_upgrade_prints_one_line_and_exits_1_when_the_server_is_unreachable():
    url = f"postgresql://app:{SECRET}@127.0.0.1:{free_port()}/x"
    result = run_main("db", "upgrade", "--database-url", url)
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "cannot connect to database postgresql+asyncpg://app:***@127.0.0.1:" in line
    assert "ConnectionRefusedError" in line
    assert result.stdout == ""
    assert SECRET not in result.stderr


class FirstConnectionProxy:
    """A loopback proxy to PostgreSQL that forwards one connection, then stops listening.

    The migration gets through; every later connection is refused, as if the server had gone
    away while the command ran.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.listener.settimeout(30)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with self.listener:
            client, _ = self.listener.accept()
        # The listener is closed: from now on a connect is refused.
        with client, socket.create_connection(self.target, timeout=30) as upstream:
            client.settimeout(30)
            back = threading.Thread(target=self._pipe, args=(client, upstream), daemon=True)
            back.start()
            self._pipe(upstream, client)
            back.join(30)

    def join(self) -> None:
        """Wait until the forwarded connection has ended and every socket is closed."""
        self.thread.join(30)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        # Either side closing (or the command's engine being disposed) ends the copy.
        with suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@pytest.mark.reliability
def test_one_line_names_the_masked_url_when_the_database_goes_away_after_the_migration(
    runner, caplog
):
    caplog.set_level(logging.DEBUG)
    url = asyncio.run(create_postgres_database())
    try:
        parsed = make_url(url)
        proxy = FirstConnectionProxy(parsed.host or "127.0.0.1", parsed.port or 5432)
        through = parsed.set(port=proxy.port, password=SECRET)
        result = runner.invoke(
            app,
            [
                "saga",
                "list",
                "--all-tenants",
                "--database-url",
                through.render_as_string(hide_password=False),
            ],
        )
        assert result.exit_code == 1, result.output
        line = error_line(result.stderr)
        shown = through.render_as_string(hide_password=True)
        assert line.startswith(f"error: cannot use database {shown}: "), line
        assert "ConnectionRefusedError" in line
        assert SECRET not in result.stdout + result.stderr + caplog.text
        proxy.join()
    finally:
        asyncio.run(drop_postgres_database(url))


def test_debug_traceback_never_shows_the_password_when_the_server_is_unreachable():
    url = f"postgresql://app:{SECRET}@127.0.0.1:{free_port()}/x"
    result = run_main("--debug", "db", "upgrade", "--database-url", url)
    assert result.returncode == 1
    assert "PersistenceError" in result.stderr  # a traceback, as --debug asks
    assert SECRET not in result.stderr + result.stdout


@pytest.fixture
def password_url() -> Iterator[str]:
    """A fresh PostgreSQL database, its URL carrying a password (trust auth ignores it)."""
    url = asyncio.run(create_postgres_database())
    try:
        yield make_url(url).set(password=SECRET).render_as_string(hide_password=False)
    finally:
        asyncio.run(drop_postgres_database(url))


def test_demo_output_masks_the_password_when_the_url_has_one(runner, password_url, caplog):
    caplog.set_level(logging.DEBUG)
    result = runner.invoke(
        app, ["--log-json", "demo", "--customers", "0", "--database-url", password_url]
    )
    assert result.exit_code == 0, result.output
    assert ":***@" in " ".join(result.stdout.split())
    assert SECRET not in result.stdout + result.stderr
    assert SECRET not in caplog.text


@pytest.mark.parametrize("path", READ_COMMANDS, ids=" ".join)
def test_read_command_refuses_and_creates_nothing_when_the_sqlite_file_does_not_exist(
    runner, path, tmp_path
):
    database = tmp_path / "missing.db"
    result = runner.invoke(app, invocation(path, f"sqlite:///{database}"))
    assert result.exit_code == 1, result.output
    line = error_line(result.stderr)
    assert f"no database at {database}" in line and "does not exist" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", WRITE_COMMANDS, ids=" ".join)
def test_write_command_creates_the_database_when_the_sqlite_file_does_not_exist(
    runner, path, tmp_path
):
    database = tmp_path / "new.db"
    result = runner.invoke(app, invocation(path, f"sqlite:///{database}"))
    assert result.exit_code == 0, result.output
    assert database.is_file()


@pytest.mark.parametrize("path", READ_COMMANDS, ids=" ".join)
def test_read_command_reads_when_the_sqlite_file_exists(runner, path, seeded_url):
    result = runner.invoke(app, invocation(path, seeded_url))
    # saga show and billing report find nothing to show; what matters is that they read.
    assert "no database at" not in result.stderr


def test_read_command_refuses_the_default_path_when_no_database_is_there(
    runner, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DOTMAC_DATABASE_URL", raising=False)
    result = runner.invoke(app, ["saga", "list", "--all-tenants"])
    assert result.exit_code == 1
    assert "no database at dotmac_business_logic.db" in error_line(result.stderr)
    assert list(tmp_path.iterdir()) == []
