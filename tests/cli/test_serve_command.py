"""``dotmac-bl serve``: the real server process, over loopback, with its recovery worker."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dotmac_shared.business_logic.http import create_api_key
from dotmac_shared.business_logic.operations import seed_demo_data
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from tests.cli.helpers import abandon_service_sagas, one_error_line

CLI = [str(Path(sys.executable).with_name("dotmac-bl"))]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def prepare(url: str) -> str:
    factory = create_session_factory(url)
    try:
        await seed_demo_data(factory)
        return (await create_api_key(factory, "tenant123", role="admin")).token
    finally:
        await engine_of(factory).dispose()


async def until_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=base) as client:
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                if (await client.get("/v1/openapi.json")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            await asyncio.sleep(0.1)


async def test_serve_answers_over_loopback_and_recovers_abandoned_sagas_when_running(
    database_url, tmp_path: Path
):
    token = await prepare(database_url)
    [abandoned] = await abandon_service_sagas(database_url)
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--database-url", database_url, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await until_ready(base, proc)
        headers = {"Authorization": f"Bearer {token}", "X-Request-ID": "loopback-1"}
        async with httpx.AsyncClient(base_url=base, headers=headers) as client:
            listed = await client.get("/v1/sagas")
            assert listed.status_code == 200
            assert listed.headers["x-request-id"] == "loopback-1"
            deadline = time.monotonic() + 60
            while True:  # the worker in the server process takes the saga over
                saga = (await client.get(f"/v1/sagas/{abandoned}")).json()
                if saga["status"] == "completed":
                    break
                assert time.monotonic() < deadline, saga
                await asyncio.sleep(0.2)
            refused = await client.get("/v1/sagas", headers={"Authorization": "Bearer nope"})
            assert refused.status_code == 401
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()
    assert f"http://127.0.0.1:{port}/v1" in out.decode()


def test_serve_fails_in_one_line_when_the_http_extra_is_missing(tmp_path: Path):
    # A module finder that hides uvicorn, as an install without the [http] extra would.
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n"
        "class Hide:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'uvicorn' or name.startswith('uvicorn.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Hide())\n"
    )
    result = subprocess.run(
        [*CLI, "serve", "--database-url", f"sqlite:///{tmp_path / 'x.db'}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(hide), "COLUMNS": "200"},
        timeout=60,
    )
    assert result.returncode == 1
    line = one_error_line(result.stderr)
    assert "uvicorn" in line and "[http]" in line


@pytest.mark.parametrize("command", [["--help"]])
def test_serve_documents_its_options_when_asked(command):
    result = subprocess.run(
        [*CLI, "serve", *command],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0
    for option in ("--database-url", "--host", "--port", "--worker"):
        assert option in result.stdout
