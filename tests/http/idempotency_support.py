"""A tiny FastAPI app behind IdempotencyMiddleware, and managers on every store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.http import (
    IdempotencyMiddleware,
    idempotency_key_of,
    install_problem_handlers,
    require_idempotency_key,
)
from dotmac_shared.business_logic.idempotency import IdempotencyManager, RedisIdempotencyStore
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from tests.support.services import (
    create_postgres_database,
    drop_postgres_database,
    fresh_redis_prefix,
    redis_client_of,
    sqlite_url,
)

#: SQL on SQLite and PostgreSQL, and Redis (redis-py; the store suite covers valkey-glide).
STORES = ["sqlite", "postgresql", "redis"]

BINARY = bytes(range(256)) * 4
CHUNKS = [b"id,amount\n", b"1,10.00\n", b"2,20.50\n"]


@asynccontextmanager
async def manager_on(
    kind: str, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[IdempotencyManager]:
    """A manager on a fresh store of ``kind`` whose time is ``clock``."""
    if kind == "redis":
        async with fresh_redis_prefix() as prefix, redis_client_of("redis-py") as client:
            store = RedisIdempotencyStore(client, prefix=prefix, clock=clock)
            yield IdempotencyManager(store=store, clock=clock)
        return
    url = sqlite_url(tmp_path) if kind == "sqlite" else await create_postgres_database()
    factory = create_session_factory(url)
    try:
        yield IdempotencyManager(factory, clock=clock)
    finally:
        await engine_of(factory).dispose()
        if kind == "postgresql":
            await drop_postgres_database(url)


@pytest.fixture
def clock() -> ManualClock:
    """The managers' clock: tests advance it past leases and expiries."""
    return ManualClock()


@pytest.fixture(params=STORES)
async def manager(
    request: pytest.FixtureRequest, clock: ManualClock, tmp_path: Path
) -> AsyncIterator[IdempotencyManager]:
    """A manager on each store."""
    async with manager_on(request.param, clock, tmp_path) as made:
        yield made


class Gate:
    """Holds ``/slow`` requests until opened; says when one has entered."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()


def make_app(manager: IdempotencyManager, **middleware: Any) -> FastAPI:
    """The app: ``app.state.calls`` counts how often each route really ran."""
    app = FastAPI()
    install_problem_handlers(app)
    calls: dict[str, int] = {}
    gate = Gate()
    app.state.calls = calls
    app.state.gate = gate

    def ran(name: str) -> int:
        calls[name] = calls.get(name, 0) + 1
        return calls[name]

    @app.post("/orders")
    async def create_order(request: Request) -> JSONResponse:
        number = ran("orders")
        return JSONResponse(
            {"order": number, "echo": (await request.body()).decode(), "tenant_key": None},
            status_code=201,
            headers={"X-Order": str(number), "Location": f"/orders/{number}"},
        )

    @app.patch("/orders")
    async def patch_order() -> dict[str, int]:
        return {"patched": ran("patch")}

    @app.get("/orders")
    async def list_orders() -> dict[str, int]:
        return {"listed": ran("list")}

    @app.post("/other")
    async def other() -> dict[str, int]:
        return {"other": ran("other")}

    @app.post("/stream")
    async def stream() -> StreamingResponse:
        ran("stream")

        async def rows() -> AsyncIterator[bytes]:
            for chunk in CHUNKS:
                yield chunk

        return StreamingResponse(rows(), media_type="text/csv")

    @app.post("/binary")
    async def binary() -> Response:
        ran("binary")
        return Response(BINARY, media_type="application/octet-stream")

    @app.post("/unavailable")
    async def unavailable() -> JSONResponse:
        return JSONResponse({"n": ran("unavailable")}, status_code=503)

    @app.post("/invalid")
    async def invalid() -> JSONResponse:
        return JSONResponse({"n": ran("invalid")}, status_code=400)

    @app.post("/boom")
    async def boom() -> dict[str, int]:
        ran("boom")
        raise RuntimeError("the route broke")

    @app.post("/slow")
    async def slow() -> JSONResponse:
        number = ran("slow")
        gate.entered.set()
        await gate.open.wait()
        return JSONResponse({"slow": number}, status_code=201)

    @app.post("/required")
    async def required(key: str = Depends(require_idempotency_key)) -> dict[str, Any]:
        return {"required": ran("required"), "key": key}

    @app.post("/key")
    async def key(request: Request) -> dict[str, str | None]:
        ran("key")
        return {"key": idempotency_key_of(request)}

    app.add_middleware(IdempotencyMiddleware, manager=manager, **middleware)
    return app


def client_of(app: Callable[..., Any]) -> httpx.AsyncClient:
    """An in-process client; app exceptions become 500 responses, as under a server."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def keyed(key: str, **headers: str) -> dict[str, str]:
    """Headers with ``key`` as a Structured Field String."""
    return {"Idempotency-Key": f'"{key}"', **headers}
