"""A uvicorn server killed (SIGKILL) mid-request: restarted, its key is usable after the lease."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.http.idempotency_crash_app import LEASE_SECONDS
from tests.support.services import free_port

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def server(database_url: str, directory: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start the crash app under uvicorn; wait (polling /health) until it answers."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.http.idempotency_crash_app",
            database_url,
            str(port),
            str(directory),
        ],
        cwd=ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "the server exited at start-up"
            assert time.monotonic() < deadline, "the server did not start"
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)  # polls a condition: the server's start
        yield process, base
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)


async def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        await asyncio.sleep(0.02)  # polls a condition: the request reaching the route


async def test_killed_servers_key_is_usable_after_its_lease_when_restarted(database_url, tmp_path):
    headers = {"Idempotency-Key": '"crash-1"', "X-Tenant-ID": "t1"}
    (tmp_path / "block").write_text("")
    with server(database_url, tmp_path) as (process, base):
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            in_flight = asyncio.create_task(client.post("/work", headers=headers))
            await wait_for(tmp_path / "entered")
            os.kill(process.pid, signal.SIGKILL)
            assert process.wait(30) == -signal.SIGKILL
            with pytest.raises(httpx.TransportError):
                await in_flight
    (tmp_path / "block").unlink()

    with server(database_url, tmp_path) as (_, base):
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            blocked = await client.post("/work", headers=headers)
            assert blocked.status_code == 409  # the dead request's lease still runs
            assert 0 < int(blocked.headers["retry-after"]) <= LEASE_SECONDS
            (tmp_path / "clock").write_text(str(LEASE_SECONDS + 1))
            taken = await client.post("/work", headers=headers)
            replay = await client.post("/work", headers=headers)
    assert taken.status_code == 201
    assert "idempotent-replayed" not in taken.headers
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == taken.json()
