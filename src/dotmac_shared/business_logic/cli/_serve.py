"""``dotmac-bl serve``: the ``/v1`` API under uvicorn, with the saga recovery worker.

The web packages come from the ``[http]`` extra; without them the command says so in one
line (the rest of the CLI never imports them).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Annotated

import typer

from dotmac_shared.business_logic.cli._output import (
    DatabaseUrl,
    console,
    fail,
    run_async,
    session_factory,
)

__all__ = ["CONSOLE_SECRET_ENV", "HTTP_EXTRA_HINT", "require_http_extra", "serve"]

#: The environment variable whose value signs the console's sessions (32 bytes or more).
CONSOLE_SECRET_ENV = "DOTMAC_CONSOLE_SECRET"

#: How to get the web packages.
HTTP_EXTRA_HINT = "pip install 'dotmac-business-logic[http]'"


def require_http_extra(*modules: str) -> list[ModuleType]:
    """Import ``modules`` (the web packages and what needs them), or fail in one line.

    Raises:
        typer.Exit: One of them (or a package it needs) is not installed.
    """
    try:
        return [importlib.import_module(name) for name in modules]
    except ImportError as exc:
        fail(
            f"this command needs the HTTP extra ({exc.name or exc} is not installed): "
            f"{HTTP_EXTRA_HINT}"
        )


@contextlib.contextmanager
def _exit_cleanly_after_shutdown() -> Iterator[None]:
    """Let SIGINT/SIGTERM end ``serve`` with exit code 0 after uvicorn's graceful shutdown.

    uvicorn handles the signal (stops accepting, drains requests, runs the lifespan's
    shutdown: the worker stops) and then raises it again under the handlers it found, to die
    of it. Under these handlers that second delivery is a no-op, so the database is closed
    and the command exits normally, as ``dotmac-bl worker`` does.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    saved = {sig: signal.signal(sig, lambda *_: None) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def serve(
    database_url: DatabaseUrl = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = 8000,
    lease_seconds: Annotated[
        float,
        typer.Option(min=0.1, help="Lease of the sagas the API runs (and the worker takes over)."),
    ] = 30.0,
    worker: Annotated[
        bool,
        typer.Option(
            "--worker/--no-worker",
            help="Run the saga recovery worker in the same process.",
        ),
    ] = True,
) -> None:
    """Serve the /v1 API (OpenAPI at /v1/openapi.json, docs at /docs) until SIGINT/SIGTERM.

    The saga recovery worker runs beside it: sagas and billing runs whose process died
    are finished. Create a key first: dotmac-bl apikey create --tenant T. The operator
    console is at /console (sign in with a key); its sessions are signed with
    $DOTMAC_CONSOLE_SECRET if set (every process serving the same users needs the same),
    else with a random secret that ends them on restart.
    """
    uvicorn, api = require_http_extra("uvicorn", "dotmac_shared.business_logic.http")

    async def run() -> None:
        async with session_factory(database_url) as factory:
            app = api.create_app(
                factory,
                lease_seconds=lease_seconds,
                recovery_worker=worker,
                console_secret=os.environ.get(CONSOLE_SECRET_ENV) or None,
            )
            config = uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="on")
            server = uvicorn.Server(config)
            console.print(
                f"serving the API on http://{host}:{port}/v1 (docs at /docs, "
                f"console at http://{host}:{port}/console)"
                + ("; saga recovery worker running" if worker else ""),
                soft_wrap=True,
                highlight=False,
            )
            with _exit_cleanly_after_shutdown():
                await server.serve()
            if not server.started:
                # uvicorn logged why (the port is taken, say); the exit code says it too.
                raise typer.Exit(1)

    run_async(run())
