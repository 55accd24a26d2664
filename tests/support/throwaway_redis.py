"""A redis-server of a test's own, on a free loopback port, that the test may stop and start.

The shared test Redis is never stopped; faults are caused on one of these instead.

Example:
    >>> with throwaway_redis(tmp_path) as server:  # doctest: +SKIP
    ...     client = redis.asyncio.Redis.from_url(server.url)
    ...     server.stop()  # the next command fails: the server is gone
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from tests.support.services import free_port, require

__all__ = ["ThrowawayRedis", "free_port", "throwaway_redis"]

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


class ThrowawayRedis:
    """One ``redis-server`` process on 127.0.0.1, its files in ``directory``.

    Args:
        directory: Where it keeps its files (its append-only file, if any); the same
            directory across :meth:`stop` and :meth:`start`, so a persisting server gets its
            data back after a restart.
        persistence: ``"none"`` (``--save "" --appendonly no``: a restart forgets
            everything), ``"aof"`` (append-only file, fsync on every write) or ``"rdb"``
            (snapshots only).
        extra_args: More ``redis-server`` arguments (``--rename-command CONFIG ""``...).
    """

    def __init__(
        self, directory: Path, *, persistence: str = "none", extra_args: Sequence[str] = ()
    ) -> None:
        if persistence not in {"none", "aof", "rdb"}:
            raise ValueError(f"persistence must be none, aof or rdb, not {persistence!r}")
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._persistence = persistence
        self._extra = list(extra_args)
        self._process: subprocess.Popen[bytes] | None = None

    def _args(self) -> list[str]:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.directory), "--daemonize", "no", "--protected-mode", "no"]
        if self._persistence == "aof":
            args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        elif self._persistence == "rdb":
            args += ["--save", "3600 1", "--appendonly", "no"]
        else:
            args += ["--save", "", "--appendonly", "no"]
        return args + self._extra

    @property
    def running(self) -> bool:
        """Whether the process runs."""
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers ``PING``."""
        if self.running:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn,
            ):
                conn.sendall(b"PING\r\n")
                if conn.recv(64).startswith(b"+PONG"):  # not -LOADING: its data is back
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (SIGTERM: an AOF server flushes its file first) and wait for it."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextlib.contextmanager
def throwaway_redis(
    directory: Path, *, persistence: str = "none", extra_args: Sequence[str] = ()
) -> Iterator[ThrowawayRedis]:
    """A started :class:`ThrowawayRedis`, stopped afterwards.

    Without redis-server the test skips, except with ``CI=true``, where it fails.
    """
    if not Path(REDIS_SERVER).exists():
        require("a throwaway Redis server", FileNotFoundError(f"{REDIS_SERVER} not found"))
    server = ThrowawayRedis(directory, persistence=persistence, extra_args=extra_args)
    server.start()
    try:
        yield server
    finally:
        server.stop()
