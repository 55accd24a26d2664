"""Authentication (API keys, a pluggable callable) and correlation ids through ``/v1``."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from starlette.exceptions import HTTPException

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.http import (
    ApiKey,
    Principal,
    correlation_id_of,
    create_api_key,
    list_api_keys,
    revoke_api_key,
    verify_api_key,
)
from dotmac_shared.business_logic.operations._seed import DEMO_CUSTOMER_ID
from dotmac_shared.business_logic.sagas import SagaCoordinator
from tests.http.api_support import PROBLEM, running_api

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


async def test_key_secret_is_stored_only_as_a_digest_when_created(session_factory):
    created = await create_api_key(session_factory, "t1", role="admin", name="ci")
    async with session_factory() as session:
        row = (await session.execute(select(ApiKey))).scalar_one()
    # dmk_<16 hex>_<secret>: the secret (token_urlsafe) may itself hold "_".
    secret = created.token.split("_", 2)[2]
    assert len(secret) >= 40
    assert secret not in row.secret_sha256 and created.token.startswith("dmk_")
    assert row.key_id == created.info.key_id and row.role == "admin"
    verified = await verify_api_key(session_factory, created.token)
    assert verified is not None and verified.roles == {"admin", "operator"}


async def test_verify_refuses_the_token_when_wrong_malformed_or_revoked(session_factory):
    created = await create_api_key(session_factory, "t1")
    wrong = created.token[:-4] + ("aaaa" if not created.token.endswith("aaaa") else "bbbb")
    assert await verify_api_key(session_factory, wrong) is None
    assert await verify_api_key(session_factory, "dmk_nope") is None
    revoked = await revoke_api_key(session_factory, created.info.key_id)
    assert revoked.revoked_at is not None
    assert await verify_api_key(session_factory, created.token) is None
    listed = await list_api_keys(session_factory, "t1")
    assert [key.key_id for key in listed] == [created.info.key_id]
    with pytest.raises(InvalidInputError):
        await revoke_api_key(session_factory, "0" * 16)


async def test_create_refuses_an_unknown_role_when_asked(session_factory):
    with pytest.raises(InvalidInputError) as caught:
        await create_api_key(session_factory, "t1", role="root")
    assert caught.value.field == "role"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer dmk_bogus"}],
    ids=["missing", "not-bearer", "unknown"],
)
async def test_request_is_401_problem_when_the_credentials_are_bad(session_factory, headers):
    async with running_api(session_factory) as api:
        response = await api.client.get("/v1/sagas", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_request_is_401_when_the_key_was_revoked(session_factory):
    async with running_api(session_factory) as api:
        key_id = api.operator.split("_")[1]
        assert (
            await api.client.get("/v1/sagas", headers=api.auth(api.operator))
        ).status_code == 200
        await revoke_api_key(session_factory, key_id)
        response = await api.client.get("/v1/sagas", headers=api.auth(api.operator))
    assert response.status_code == 401


async def test_openapi_document_is_public_and_documents_bearer_auth_when_fetched(
    session_factory,
):
    async with running_api(session_factory) as api:
        response = await api.client.get("/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert "HTTPBearer" in document["components"]["securitySchemes"]
    assert {"/v1/sagas", "/v1/billing-runs", "/v1/tenants"} <= set(document["paths"])


async def test_a_custom_authenticate_decides_the_tenant_when_plugged_in(session_factory):
    async def by_header(request):
        tenant = request.headers.get("x-test-tenant")
        if tenant is None:
            raise HTTPException(status_code=401, detail="who are you?")
        return Principal(tenant_id=tenant, user_id="u1", roles=frozenset({"operator"}))

    async with running_api(session_factory, authenticate=by_header) as api:
        mine = await api.client.post(
            f"/v1/customers/{DEMO_CUSTOMER_ID}/eligibility",
            params={"plan": "residential_basic"},
            headers={"x-test-tenant": "tenant123"},
        )
        theirs = await api.client.post(
            f"/v1/customers/{DEMO_CUSTOMER_ID}/eligibility",
            params={"plan": "residential_basic"},
            headers={"x-test-tenant": "elsewhere"},
        )
        nobody = await api.client.get("/v1/sagas")
    assert mine.status_code == 200 and theirs.status_code == 404
    assert nobody.status_code == 401 and nobody.json()["detail"] == "who are you?"


async def test_x_request_id_sets_the_correlation_id_of_logs_sagas_and_errors_when_sent(
    session_factory, caplog
):
    caplog.set_level(logging.INFO, logger="dotmac_shared.business_logic.http._correlation")
    async with running_api(session_factory) as api:
        created = await api.client.post(
            f"/v1/customers/{DEMO_CUSTOMER_ID}/services",
            json={"service_type": "internet", "plan": "standard"},
            headers=api.auth(api.operator, **{"Idempotency-Key": '"c1"', "X-Request-ID": "req-42"}),
        )
        missing = await api.client.get(
            "/v1/sagas/nope", headers=api.auth(api.operator, **{"X-Request-ID": "req-43"})
        )
    assert created.status_code == 201 and created.headers["x-request-id"] == "req-42"
    saga = await SagaCoordinator(session_factory).get_saga(
        created.json()["saga_id"], tenant_id="tenant123"
    )
    assert saga["correlation_id"] == "req-42"
    assert missing.json()["correlation_id"] == "req-43" == missing.headers["x-request-id"]
    lines = [r for r in caplog.records if r.getMessage().startswith("HTTP POST")]
    assert lines and lines[0].correlation_id == "req-42"


async def test_traceparent_sets_the_correlation_id_when_no_request_id_is_sent(session_factory):
    async with running_api(session_factory) as api:
        response = await api.client.get(
            "/v1/sagas", headers=api.auth(api.operator, traceparent=TRACEPARENT)
        )
        fresh = await api.client.get("/v1/sagas", headers=api.auth(api.operator))
    assert response.headers["x-request-id"] == TRACE_ID
    assert len(fresh.headers["x-request-id"]) == 32


@given(st.text(max_size=80))
def test_a_correlation_id_is_always_safe_to_store_when_any_request_id_is_sent(value):
    cid = correlation_id_of({"x-request-id": value})
    assert 1 <= len(cid) <= 64 and cid.isascii()
    assert not any(ch in cid for ch in "\r\n \t\"'")


@pytest.mark.parametrize(
    "header",
    [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        f"00-{TRACE_ID}-0000000000000000-01",
        f"ff-{TRACE_ID}-00f067aa0ba902b7-01",
        "garbage",
    ],
)
def test_an_invalid_traceparent_is_ignored_when_parsed(header):
    assert correlation_id_of({"traceparent": header}) != TRACE_ID


# Run in a fresh interpreter: a process sets its tracer provider once (the telemetry tests do).
_SPAN_SCRIPT = """
import asyncio, json, sys
import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

from dotmac_shared.business_logic.http import create_app
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of

async def main():
    factory = create_session_factory(sys.argv[1])
    app = create_app(factory)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        await client.get("/v1/sagas", headers={"X-Request-ID": "span-7"})
    await engine_of(factory).dispose()

asyncio.run(main())
print(json.dumps([[s.name, dict(s.attributes)] for s in exporter.get_finished_spans()]))
"""


def test_the_request_span_carries_the_correlation_id_when_an_sdk_is_installed(database_url):
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", _SPAN_SCRIPT, database_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    spans = json.loads(result.stdout.strip().splitlines()[-1])
    [(name, attributes)] = [span for span in spans if span[0] == "http.request"]
    assert attributes["dotmac.correlation_id"] == "span-7"
    assert attributes["url.path"] == "/v1/sagas"
