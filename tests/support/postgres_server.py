"""A throwaway PostgreSQL server on a free loopback port, for tests that stop and start it.

Fault tests must never touch the shared server's lifecycle. :class:`PostgresServer` runs a
private cluster (``initdb`` once per test session into a template folder, copied for each
server) as the ``postgres`` user, and :meth:`~PostgresServer.stop` /
:meth:`~PostgresServer.start` really stop and start it.

Example:
    >>> with PostgresServer() as server:  # doctest: +SKIP
    ...     url = server.url  # postgresql+asyncpg://postgres@127.0.0.1:PORT/postgres
    ...     server.stop()
    ...     server.start()
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from tests.support.services import free_port, require

__all__ = ["PostgresServer", "throwaway_postgres"]

_USER = "postgres"
_template: Path | None = None


def _as_postgres(*command: str, timeout: float = 60) -> None:
    prefix = ["runuser", "-u", _USER, "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=timeout, text=True)


def _chown(path: Path) -> None:
    if os.geteuid() != 0:
        return
    user = pwd.getpwnam(_USER)
    for folder, dirs, files in os.walk(path):
        os.chown(folder, user.pw_uid, user.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(folder, name), user.pw_uid, user.pw_gid, follow_symlinks=False)


def _mkdtemp(prefix: str) -> Path:
    # Not pytest's tmp_path: its parents are private to root, and the server runs as postgres.
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _chown(path)
    return path


def _initialised_template() -> Path:
    """An ``initdb``-ed cluster, made once per process and copied for each server."""
    global _template
    if _template is None:
        missing = [tool for tool in ("initdb", "pg_ctl") if shutil.which(tool) is None]
        if missing:
            require("a throwaway PostgreSQL server", FileNotFoundError(f"{missing} not on PATH"))
        root = _mkdtemp("dotmac-pg-template-")
        _as_postgres("initdb", "-D", str(root / "data"), "-U", _USER, "-A", "trust", "-E", "UTF8")
        _template = root / "data"
    return _template


class PostgresServer:
    """A private PostgreSQL server: trust auth, user ``postgres``, database ``postgres``.

    Use it as a context manager: it starts on entry and is stopped and deleted on exit.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self._root = _mkdtemp("dotmac-pg-")
        self.data = self._root / "data"
        self._running = False

    @property
    def url(self) -> str:
        """The server's SQLAlchemy URL (asyncpg driver)."""
        return f"postgresql+asyncpg://{_USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        if not self.data.exists():
            shutil.copytree(_initialised_template(), self.data, symlinks=True)
            _chown(self.data)
        # fsync=off only skips flushing to disk, which a stopped process does not need;
        # synchronous_commit stays on, so an immediate stop (a crash) loses no commit.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} "
            "-c fsync=off -c full_page_writes=off"
        )
        log = str(self._root / "server.log")
        _as_postgres("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        self._running = True
        deadline = time.monotonic() + 10
        while True:  # -w waits for the socket file; make sure TCP accepts too
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: connections are closed; ``immediate``: a crash)."""
        if self._running:
            _as_postgres("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
            self._running = False

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self._root, ignore_errors=True)


@pytest.fixture
def throwaway_postgres() -> Iterator[PostgresServer]:
    """A running :class:`PostgresServer`, removed after the test."""
    with PostgresServer() as server:
        yield server
