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

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

__all__ = ["PostgresServer", "free_port", "throwaway_postgres"]

_USER = "postgres"
_template: Path | None = None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        if shutil.which("initdb") is None or shutil.which("pg_ctl") is None:
            pytest.skip("initdb/pg_ctl are not on PATH: no throwaway PostgreSQL server")
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
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data}"
        log = str(self._root / "server.log")
        _as_postgres("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        self._running = True

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
