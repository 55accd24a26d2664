"""A server the crash test kills: uvicorn, IdempotencyMiddleware on the SQL store.

Run as ``python -m tests.http.idempotency_crash_app DATABASE_URL PORT DIRECTORY``. The test
steers it through files in ``DIRECTORY``: ``clock`` holds seconds added to the real time (the
manager's clock, so the test moves time forward without sleeping), ``block`` makes ``POST
/work`` wait until the file is gone, and the server writes ``entered`` when a request
reaches the route.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from dotmac_shared.business_logic.http import IdempotencyMiddleware, install_problem_handlers
from dotmac_shared.business_logic.idempotency import IdempotencyManager
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of

LEASE_SECONDS = 30.0


class FileClock:
    """The real time plus the seconds written in a file (0 when there is none)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def now(self) -> dt.datetime:
        """Return the shifted time."""
        try:
            offset = float(self.path.read_text())
        except FileNotFoundError:
            offset = 0.0
        return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=offset)


def build(database_url: str, directory: Path) -> FastAPI:
    """The app; its session factory is made at start-up, in the server's event loop."""
    clock = FileClock(directory / "clock")
    factory = create_session_factory(database_url)
    manager = IdempotencyManager(factory, clock=clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine_of(factory).dispose()

    app = FastAPI(lifespan=lifespan)
    install_problem_handlers(app)

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/work")
    async def work() -> JSONResponse:
        (directory / "entered").write_text(str(dt.datetime.now(dt.UTC)))
        while (directory / "block").exists():
            await asyncio.sleep(0.01)
        return JSONResponse({"pid": os.getpid()}, status_code=201)

    app.add_middleware(IdempotencyMiddleware, manager=manager, lease_seconds=LEASE_SECONDS)
    return app


if __name__ == "__main__":
    url, port, folder = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    uvicorn.run(build(url, folder), host="127.0.0.1", port=port, log_level="warning")
