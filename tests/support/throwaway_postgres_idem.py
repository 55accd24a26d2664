"""A PostgreSQL server of a test's own, on a free loopback port, that the test may stop and start.

The shared server is never stopped; faults are caused on one of these instead. ``initdb`` and
``pg_ctl`` run as the ``postgres`` user (PostgreSQL refuses to run as root), on a data folder
in the system's temporary directory that this user owns.

Example:
    >>> with throwaway_postgres() as server:  # doctest: +SKIP
    ...     factory = create_session_factory(server.url)
    ...     server.stop()  # every later statement fails: the server is gone
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

import pytest

from tests.support.throwaway_redis import free_port

__all__ = ["ThrowawayPostgres", "throwaway_postgres"]

_USER = "postgres"


def _tool(name: str) -> str | None:
    return shutil.which(name) or next(
        (str(p) for p in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))), None
    )


class ThrowawayPostgres:
    """One PostgreSQL server on 127.0.0.1, its data in a fresh folder.

    Args:
        directory: An empty folder for its data (made, and handed to the ``postgres`` user).
    """

    def __init__(self, directory: Path) -> None:
        initdb, pg_ctl = _tool("initdb"), _tool("pg_ctl")
        if initdb is None or pg_ctl is None:
            raise RuntimeError("initdb and pg_ctl are needed on PATH")
        self._initdb, self._pg_ctl = initdb, pg_ctl
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        #: The URL of its ``postgres`` database (user postgres, trust authentication).
        self.url = f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"
        self._initialised = False

    def _run(self, *args: str, timeout: float = 60) -> None:
        command = ["runuser", "-u", _USER, "--", *args] if os.geteuid() == 0 else list(args)
        subprocess.run(command, check=True, capture_output=True, timeout=timeout)

    def _initialise(self) -> None:
        account = pwd.getpwnam(_USER) if os.geteuid() == 0 else None
        if account is not None:
            os.chown(self.directory, account.pw_uid, account.pw_gid)
        self._run(
            self._initdb,
            "-D",
            str(self.data),
            "-U",
            _USER,
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        self._initialised = True

    def start(self) -> None:
        """Start the server (initialising its data folder the first time) and wait for it."""
        if not self._initialised:
            self._initialise()
        # fsync=off only skips flushing to disk, which a stopped process does not need;
        # synchronous_commit stays on, so an immediate stop (a crash) loses no commit.
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} "
            "-c fsync=off -c full_page_writes=off"
        )
        log = str(self.directory / "server.log")
        self._run(self._pg_ctl, "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        deadline = time.monotonic() + 10
        while True:  # -w waits for it to accept connections; make sure TCP does too
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL on port {self.port} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop it at once, as a crash would (``-m immediate``), and wait until it is down."""
        if self._initialised and (self.data / "postmaster.pid").exists():
            self._run(self._pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop")


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    """A started :class:`ThrowawayPostgres`, stopped and deleted afterwards.

    Skips when ``initdb``/``pg_ctl`` are missing.
    """
    if _tool("initdb") is None or _tool("pg_ctl") is None:
        pytest.skip("initdb and pg_ctl are needed for a throwaway PostgreSQL server")
    directory = Path(tempfile.mkdtemp(prefix="dotmac-idem-pg-"))
    server = ThrowawayPostgres(directory)
    try:
        server.start()
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            server.stop()
        shutil.rmtree(directory, ignore_errors=True)
