"""The OpenAPI document against the running API: schemathesis finds no 5xx, no schema violations.

The server runs under uvicorn in a thread with its own event loop (the database engine
lives there); schemathesis talks to it over loopback, with an admin key of the demo tenant,
a modest number of generated requests per operation.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from dotmac_shared.business_logic.http import create_api_key, create_app
from dotmac_shared.business_logic.operations import seed_demo_data
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of

EXAMPLES_PER_OPERATION = 12
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


async def _prepare(url: str) -> str:
    factory = create_session_factory(url)
    try:
        await seed_demo_data(factory, customers=3)
        return (await create_api_key(factory, "tenant123", role="admin")).token
    finally:
        await engine_of(factory).dispose()


@pytest.fixture
def served(database_url: str) -> Iterator[tuple[str, str]]:
    """The API served on a free loopback port; yields its base URL and an admin token."""
    token = asyncio.run(_prepare(database_url))
    factory = create_session_factory(database_url, migrate=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(factory), host="127.0.0.1", port=port, log_level="warning")
    )

    async def serve_then_close() -> None:
        try:
            await server.serve()
        finally:
            # In the server's own loop: the pooled connections belong to it.
            await engine_of(factory).dispose()

    thread = threading.Thread(target=asyncio.run, args=(serve_then_close(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}", token
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "the server did not stop"


def test_every_operation_conforms_to_the_schema_when_fuzzed(served):
    base, token = served
    schema = schemathesis.openapi.from_url(f"{base}/v1/openapi.json")
    headers = {"Authorization": f"Bearer {token}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 17
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def conforms(case):
            case.call_and_validate(base_url=base, headers=headers, checks=CHECKS)

        conforms()
    # The API still answers after the fuzzing.
    assert httpx.get(f"{base}/v1/sagas", headers=headers).status_code == 200
