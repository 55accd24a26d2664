"""``dotmac-bl worker`` outlives a PostgreSQL restart and then recovers abandoned sagas.

The server is a private one (``tests.support.postgres_server``), really stopped and started
under the running worker process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from dotmac_shared.business_logic.operations import seed_demo_data
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from dotmac_shared.business_logic.persistence.models import SagaExecution
from tests.cli.helpers import SEEDED_CUSTOMERS, abandon_service_sagas
from tests.support.postgres_server import PostgresServer

pytestmark = pytest.mark.reliability

SAGAS = 2

SAGA_TABLE = SagaExecution.__tablename__


async def _seed(url: str) -> None:
    factory = create_session_factory(url)
    try:
        await seed_demo_data(factory, customers=SEEDED_CUSTOMERS)
    finally:
        await engine_of(factory).dispose()


async def _statuses(url: str, saga_ids: list[str]) -> list[str]:
    factory = create_session_factory(url, migrate=False)
    try:
        async with factory() as session:
            rows = await session.execute(
                text(f"SELECT saga_id, status FROM {SAGA_TABLE}"),
            )
            found = dict(rows.all())
    finally:
        await engine_of(factory).dispose()
    return [found.get(saga_id, "missing") for saga_id in saga_ids]


def _wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(120)
def test_worker_survives_a_database_restart_and_then_completes_abandoned_sagas(tmp_path: Path):
    with PostgresServer() as server:
        asyncio.run(_seed(server.url))
        out, err = tmp_path / "worker.out", tmp_path / "worker.err"
        command = [
            str(Path(sys.executable).with_name("dotmac-bl")),
            "worker",
            "--database-url",
            server.url,
            "--lease-seconds",
            "5",
            "--poll-interval",
            "0.2",
            "--max-backoff",
            "0.5",
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
        with out.open("w") as stdout, err.open("w") as stderr:
            worker = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)
        try:
            _wait_for(lambda: "started" in out.read_text(), 30, "the worker to start")
            server.stop("fast")
            time.sleep(3)  # the worker's passes fail meanwhile
            assert worker.poll() is None, err.read_text()
            server.start()
            saga_ids = asyncio.run(abandon_service_sagas(server.url, SAGAS))
            _wait_for(
                lambda: asyncio.run(_statuses(server.url, saga_ids)) == ["completed"] * SAGAS,
                30,
                "the worker to complete the abandoned sagas",
            )
            assert worker.poll() is None, err.read_text()
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                code = worker.wait(15)
            except subprocess.TimeoutExpired:
                worker.kill()
                raise
    assert code == 0, err.read_text()
    assert f"worker stopped after recovering {SAGAS} sagas" in out.read_text()
    logged = err.read_text()
    assert "saga recovery pass failed" in logged and "Traceback" in logged
