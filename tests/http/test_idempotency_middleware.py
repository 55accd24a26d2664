"""IdempotencyMiddleware on every store: run once, replay, refuse, release, take over."""

from __future__ import annotations

import asyncio
import datetime as dt

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from dotmac_shared.business_logic.http import (
    PROBLEM_CONTENT_TYPE,
    IdempotencyMiddleware,
)
from dotmac_shared.business_logic.idempotency import IdempotencyManager, RedisIdempotencyStore
from tests.http import idempotency_support
from tests.http.idempotency_support import BINARY, CHUNKS, client_of, keyed, make_app
from tests.support.services import free_port

# The fixtures: a manager on each store (SQLite, PostgreSQL, Redis) and its ManualClock.
clock = idempotency_support.clock
manager = idempotency_support.manager


def assert_problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"].endswith(f"/{code}")
    return body


async def test_retry_replays_status_headers_and_body_when_the_key_is_reused(manager):
    app = make_app(manager)
    async with client_of(app) as client:
        first = await client.post("/orders", content=b"one order", headers=keyed("k1"))
        again = await client.post("/orders", content=b"one order", headers=keyed("k1"))
    assert app.state.calls["orders"] == 1
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json() == {"order": 1, "echo": "one order", "tenant_key": None}
    assert again.headers["x-order"] == first.headers["x-order"] == "1"
    assert again.headers["location"] == "/orders/1"
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers


async def test_streamed_body_is_replayed_whole_when_retried(manager):
    app = make_app(manager)
    async with client_of(app) as client:
        first = await client.post("/stream", headers=keyed("s1"))
        again = await client.post("/stream", headers=keyed("s1"))
    assert app.state.calls["stream"] == 1
    assert first.content == again.content == b"".join(CHUNKS)
    assert again.headers["content-type"].startswith("text/csv")
    assert again.headers["idempotent-replayed"] == "true"


async def test_binary_body_is_replayed_byte_for_byte_when_retried(manager):
    app = make_app(manager)
    async with client_of(app) as client:
        await client.post("/binary", headers=keyed("b1"))
        again = await client.post("/binary", headers=keyed("b1"))
    assert app.state.calls["binary"] == 1
    assert again.content == BINARY
    assert again.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [("POST", "/orders", b"another body"), ("POST", "/other", b"x"), ("PATCH", "/orders", b"x")],
    ids=["body", "path", "method"],
)
async def test_reused_key_is_a_422_problem_when_the_request_differs(manager, method, path, body):
    app = make_app(manager)
    async with client_of(app) as client:
        await client.post("/orders", content=b"x", headers=keyed("m1"))
        response = await client.request(method, path, content=body, headers=keyed("m1"))
    assert_problem(response, 422, "idempotency_payload_mismatch")
    assert app.state.calls == {"orders": 1}


async def test_query_string_is_part_of_the_request_when_the_key_is_reused(manager):
    app = make_app(manager)
    async with client_of(app) as client:
        await client.post("/orders?dry_run=0", headers=keyed("q1"))
        response = await client.post("/orders?dry_run=1", headers=keyed("q1"))
    assert_problem(response, 422, "idempotency_payload_mismatch")


async def test_missing_key_is_a_400_problem_when_the_route_requires_one(manager):
    app = make_app(manager)
    async with client_of(app) as client:
        missing = await client.post("/required")
        present = await client.post("/required", headers=keyed("r1"))
    body = assert_problem(missing, 400, "idempotency_key_missing")
    assert body["instance"] == "/required"
    assert present.json() == {"required": 1, "key": "r1"}


async def test_missing_key_is_a_400_problem_when_the_middleware_requires_one(manager):
    app = make_app(manager, required=True)
    async with client_of(app) as client:
        response = await client.post("/orders")
        listed = await client.get("/orders")  # GET is not covered: passes through
    assert_problem(response, 400, "idempotency_key_missing")
    assert "orders" not in app.state.calls
    assert listed.json() == {"listed": 1}


async def test_unkeyed_request_runs_every_time_when_the_key_is_optional(manager):
    app = make_app(manager)
    async with client_of(app) as client:
        await client.post("/orders")
        await client.post("/orders")
    assert app.state.calls["orders"] == 2


@pytest.mark.parametrize(
    "value", ['"unterminated', "two words", '"tab\tinside"', '""', '"bad \\x"', "1leading"]
)
async def test_malformed_key_is_a_400_problem_when_sent(manager, value):
    app = make_app(manager)
    async with client_of(app) as client:
        response = await client.post("/orders", headers={"Idempotency-Key": value})
    assert_problem(response, 400, "idempotency_key_invalid")
    assert "orders" not in app.state.calls


async def test_two_key_headers_are_a_400_problem_when_sent(manager):
    app = make_app(manager)
    async with client_of(app) as client:
        response = await client.post(
            "/orders", headers=[("Idempotency-Key", '"a"'), ("Idempotency-Key", '"b"')]
        )
    assert_problem(response, 400, "idempotency_key_invalid")


async def test_bare_token_key_is_the_same_key_as_its_quoted_form_when_sent(manager):
    app = make_app(manager)
    async with client_of(app) as client:
        await client.post("/orders", headers={"Idempotency-Key": "order-7"})
        again = await client.post("/orders", headers={"Idempotency-Key": '"order-7"'})
        keyed_route = await client.post("/key", headers={"Idempotency-Key": '"say \\"hi\\""'})
    assert again.headers["idempotent-replayed"] == "true"
    assert keyed_route.json() == {"key": 'say "hi"'}


async def test_same_key_is_a_409_problem_with_retry_after_when_the_first_still_runs(manager):
    app = make_app(manager, lease_seconds=30)
    gate = app.state.gate
    async with client_of(app) as client:
        first = asyncio.create_task(client.post("/slow", headers=keyed("busy")))
        await gate.entered.wait()
        response = await client.post("/slow", headers=keyed("busy"))
        gate.open.set()
        done = await first
    body = assert_problem(response, 409, "idempotency_in_progress")
    # Nothing has finished yet: the estimate is what is left of the running request's lease.
    assert response.headers["retry-after"] == "30"
    assert body["idempotency_key"] == "busy"
    assert done.status_code == 201
    assert app.state.calls["slow"] == 1


async def test_retry_after_is_the_observed_duration_when_requests_have_finished(manager):
    app = make_app(manager, lease_seconds=600)
    gate = app.state.gate
    async with client_of(app) as client:
        gate.open.set()
        await client.post("/slow", headers=keyed("fast-1"))  # observed: well under a second
        gate.open.clear()
        first = asyncio.create_task(client.post("/slow", headers=keyed("fast-2")))
        while app.state.calls["slow"] < 2:
            await gate.entered.wait()
            await asyncio.sleep(0)
        response = await client.post("/slow", headers=keyed("fast-2"))
        gate.open.set()
        await first
    assert_problem(response, 409, "idempotency_in_progress")
    assert response.headers["retry-after"] == "1"


async def test_exactly_one_of_twenty_concurrent_requests_runs_when_they_share_a_key(manager):
    app = make_app(manager)
    gate = app.state.gate
    async with client_of(app) as client:
        requests = [
            asyncio.create_task(client.post("/slow", headers=keyed("crowd"))) for _ in range(20)
        ]
        await gate.entered.wait()
        # Let every other request reach the store and be refused before the first finishes.
        while sum(task.done() for task in requests) < 19:
            await asyncio.wait(requests, return_when=asyncio.FIRST_COMPLETED, timeout=1)
        gate.open.set()
        responses = await asyncio.gather(*requests)
    assert app.state.calls["slow"] == 1
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] + [409] * 19
    async with client_of(app) as client:
        after = await client.post("/slow", headers=keyed("crowd"))
    assert after.headers["idempotent-replayed"] == "true"
    assert after.json() == {"slow": 1}


async def test_twenty_concurrent_requests_run_once_when_the_route_is_fast(manager):
    app = make_app(manager)
    async with client_of(app) as client:
        responses = await asyncio.gather(
            *(client.post("/orders", content=b"same", headers=keyed("rush")) for _ in range(20))
        )
    assert app.state.calls["orders"] == 1
    for response in responses:
        assert response.status_code in (201, 409)
        if response.status_code == 201:
            assert response.json()["order"] == 1
    ran = [r for r in responses if r.status_code == 201 and "idempotent-replayed" not in r.headers]
    assert len(ran) == 1


async def test_tenants_keys_are_independent_when_they_send_the_same_key(manager):
    app = make_app(manager)
    async with client_of(app) as client:
        a = await client.post("/orders", headers=keyed("k", **{"X-Tenant-ID": "tenant-a"}))
        b = await client.post("/orders", headers=keyed("k", **{"X-Tenant-ID": "tenant-b"}))
        a_again = await client.post("/orders", headers=keyed("k", **{"X-Tenant-ID": "tenant-a"}))
    assert (a.json()["order"], b.json()["order"], a_again.json()["order"]) == (1, 2, 1)
    assert "idempotent-replayed" not in b.headers
    assert a_again.headers["idempotent-replayed"] == "true"


class SetPrincipal:
    """Stands for an authentication middleware: the bearer token names the tenant."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            token = dict(scope["headers"]).get(b"authorization", b"").decode()
            scope["state"] = {**scope.get("state", {}), "principal": {"tenant_id": token[7:]}}
        await self.app(scope, receive, send)


async def test_principal_tenant_scopes_the_key_when_authentication_ran_first(manager):
    app = make_app(manager)
    app.add_middleware(SetPrincipal)  # added last: runs first
    async with client_of(app) as client:
        # The header is ignored once a principal is known: it cannot reach another tenant.
        a = await client.post(
            "/orders", headers=keyed("k", Authorization="Bearer t-a", **{"X-Tenant-ID": "t-b"})
        )
        b = await client.post("/orders", headers=keyed("k", Authorization="Bearer t-b"))
    assert (a.json()["order"], b.json()["order"]) == (1, 2)


async def test_async_tenant_resolver_scopes_the_key_when_given(manager):
    async def resolver(scope: Scope) -> str:
        await asyncio.sleep(0)
        return "resolved-" + scope["path"].strip("/")

    app = make_app(manager, tenant_resolver=resolver)
    async with client_of(app) as client:
        await client.post("/orders", headers=keyed("k"))
        again = await client.post("/orders", headers=keyed("k"))
    assert again.headers["idempotent-replayed"] == "true"
    record = await manager.store.get("resolved-orders", "k")
    assert record is not None


async def test_invalid_tenant_is_a_422_problem_when_resolved(manager):
    app = make_app(manager)
    async with client_of(app) as client:
        response = await client.post("/orders", headers=keyed("k", **{"X-Tenant-ID": "a b"}))
    assert assert_problem(response, 422, "invalid_input")["field"] == "tenant_id"
    assert "orders" not in app.state.calls


async def test_server_error_response_is_not_stored_when_returned(manager):
    app = make_app(manager)
    async with client_of(app) as client:
        first = await client.post("/unavailable", headers=keyed("u1"))
        again = await client.post("/unavailable", headers=keyed("u1"))
    assert (first.status_code, again.status_code) == (503, 503)
    assert again.json() == {"n": 2}  # ran again: the key was released
    assert "idempotent-replayed" not in again.headers


async def test_client_error_response_is_stored_when_returned(manager):
    app = make_app(manager)
    async with client_of(app) as client:
        await client.post("/invalid", headers=keyed("i1"))
        again = await client.post("/invalid", headers=keyed("i1"))
    assert again.status_code == 400
    assert again.headers["idempotent-replayed"] == "true"
    assert app.state.calls["invalid"] == 1


async def test_raising_route_releases_the_key_when_it_fails(manager):
    app = make_app(manager)
    async with client_of(app) as client:
        first = await client.post("/boom", headers=keyed("x1"))
        again = await client.post("/boom", headers=keyed("x1"))
    assert_problem(first, 500, "internal_error")
    assert_problem(again, 500, "internal_error")
    assert app.state.calls["boom"] == 2
    assert "the route broke" not in first.text


async def test_hung_holders_key_is_taken_over_when_its_lease_has_run_out(manager, clock):
    app = make_app(manager, lease_seconds=30)
    gate = app.state.gate
    async with client_of(app) as client:
        hung = asyncio.create_task(client.post("/slow", headers=keyed("hang")))
        await gate.entered.wait()
        clock.advance(seconds=29)
        still_busy = await client.post("/slow", headers=keyed("hang"))
        clock.advance(seconds=2)
        gate.open.set()  # the taker-over runs to the end; the hung holder then wakes too
        taken = await client.post("/slow", headers=keyed("hang"))
        await hung
        replay = await client.post("/slow", headers=keyed("hang"))
    assert_problem(still_busy, 409, "idempotency_in_progress")
    assert taken.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == taken.json()  # the taker-over's result, not the lost holder's


async def test_stored_response_expires_when_its_ttl_has_passed(manager, clock):
    app = make_app(manager, ttl=dt.timedelta(hours=1))
    async with client_of(app) as client:
        await client.post("/orders", headers=keyed("t1"))
        clock.advance(minutes=59)
        replay = await client.post("/orders", headers=keyed("t1"))
        clock.advance(minutes=2)
        fresh = await client.post("/orders", headers=keyed("t1"))
    assert replay.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in fresh.headers
    assert fresh.json()["order"] == 2


async def test_oversized_body_is_a_413_problem_when_keyed(manager):
    app = make_app(manager, max_body_bytes=10)
    async with client_of(app) as client:
        response = await client.post("/orders", content=b"x" * 11, headers=keyed("big"))
    assert_problem(response, 413, "request_body_too_large")


async def test_route_dependency_is_a_500_problem_when_no_middleware_handled_the_key(manager):
    app = make_app(manager, methods=("PATCH",))  # POST /required is not covered
    async with client_of(app) as client:
        response = await client.post("/required", headers=keyed("r"))
    assert_problem(response, 500, "idempotency_error")
    assert "required" not in app.state.calls


async def test_unreachable_store_is_a_503_problem_without_its_error_text_when_keyed():
    import redis.asyncio as redis_async

    client = redis_async.Redis(port=free_port(), socket_connect_timeout=1)
    app = make_app(IdempotencyManager(store=RedisIdempotencyStore(client)))
    try:
        async with client_of(app) as http:
            response = await http.post("/orders", headers=keyed("down"))
    finally:
        await client.aclose()
    body = assert_problem(response, 503, "persistence_error")
    assert "Connection" not in response.text and "127.0.0.1" not in response.text
    assert set(body) == {"type", "title", "status", "detail", "code", "instance", "correlation_id"}


def test_middleware_rejects_a_lease_that_is_not_positive_when_built(manager):
    from dotmac_shared.business_logic.exceptions import IdempotencyError

    with pytest.raises(IdempotencyError):
        IdempotencyMiddleware(make_app(manager), manager=manager, lease_seconds=0)


async def call_raw(app: ASGIApp, path: str, key: str, on_message) -> None:
    """Drive ``app`` as a server would, handing every message it sends to ``on_message``."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"test"), (b"idempotency-key", f'"{key}"'.encode())],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }

    messages = [{"type": "http.request", "body": b"", "more_body": False}]
    disconnected = asyncio.Event()  # never set: the client stays connected

    async def receive():
        if messages:
            return messages.pop()
        await disconnected.wait()
        return {"type": "http.disconnect"}

    await app(scope, receive, on_message)


@pytest.mark.parametrize(("path", "stored"), [("/stream", "completed"), ("/unavailable", None)])
async def test_response_ends_only_after_it_is_stored_or_released_when_first_run(
    manager, path, stored
):
    app = make_app(manager)
    seen = []

    async def on_message(message):
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            record = await manager.store.get("default", "end-1")
            seen.append(None if record is None else record.status.value)

    await call_raw(app, path, "end-1", on_message)
    assert seen == [stored]
