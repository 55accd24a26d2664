"""The ``/v1`` API as one FastAPI application: :func:`create_app`.

Requests pass, outermost first: the correlation id (``X-Request-ID``/``traceparent``), the
authentication (a :class:`Principal` in ``request.state``), the Idempotency-Key middleware
(keys scoped by the principal's tenant), then the routes; every error is answered with
Problem Details.

Example:
    >>> from dotmac_shared.business_logic import create_session_factory
    >>> from dotmac_shared.business_logic.http import create_app
    >>> app = create_app(create_session_factory("sqlite:///api.db"))  # doctest: +SKIP
    >>> # uvicorn.run(app), or: dotmac-bl serve
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator

from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.clock import Clock, as_clock
from dotmac_shared.business_logic.http import (
    _routes_billing,
    _routes_policies,
    _routes_provisioning,
    _routes_sagas,
)
from dotmac_shared.business_logic.http._auth import (
    PUBLIC_PATHS,
    ApiKeyAuthenticator,
    Authenticate,
    AuthenticationMiddleware,
)
from dotmac_shared.business_logic.http._correlation import CorrelationMiddleware
from dotmac_shared.business_logic.http._idempotency import IdempotencyMiddleware
from dotmac_shared.business_logic.http._problems import install_problem_handlers
from dotmac_shared.business_logic.http._state import ApiServices
from dotmac_shared.business_logic.idempotency import IdempotencyManager
from dotmac_shared.business_logic.operations import shipped_coordinator
from dotmac_shared.business_logic.policies import PlanEligibilityEngine, PolicyEngine
from dotmac_shared.business_logic.policies._eligibility import (
    register_shipped_policies,
    shipped_policy_names,
)
from dotmac_shared.business_logic.sagas import SagaWorker

__all__ = ["API_VERSION", "CONSOLE_PATH", "create_app"]

API_VERSION = "1"
#: Where ``create_app`` mounts the operator console.
CONSOLE_PATH = "/console"


def _shipped_engine() -> PolicyEngine:
    return register_shipped_policies(PolicyEngine(), shipped_policy_names())


def create_app(
    session_factory: async_sessionmaker[AsyncSession],
    *,
    authenticate: Authenticate | None = None,
    clock: Clock | None = None,
    policy_engine: PolicyEngine | None = None,
    lease_seconds: float = 30.0,
    idempotency_lease_seconds: float = 60.0,
    idempotency_ttl: dt.timedelta = dt.timedelta(hours=24),
    recovery_worker: bool = False,
    worker_poll_interval: float = 1.0,
    console: bool = True,
    console_secret: bytes | str | None = None,
) -> FastAPI:
    """Build the ``/v1`` API on a migrated session factory.

    Args:
        session_factory: The migrated session factory (``create_session_factory``).
        authenticate: Request in, :class:`Principal` out; bearer API keys from
            ``dotmac_api_keys`` by default (``dotmac-bl apikey create``).
        clock: Where times come from (sagas, keys, billing periods); the system clock.
        policy_engine: The policies ``/v1/policies`` serves; every shipped policy by default.
        lease_seconds: The lease of the sagas the API runs: after a crash, a worker takes
            them over this long after their last renewal.
        idempotency_lease_seconds: How long a crashed request blocks its Idempotency-Key.
            Longer than ``lease_seconds``, so that a retry after a crash finds the saga it
            started free to resume.
        idempotency_ttl: How long a finished request's response is replayed.
        recovery_worker: Run a saga recovery worker with the app (``dotmac-bl serve`` does):
            it finishes sagas and billing runs whose process died.
        worker_poll_interval: The worker's pause when it found nothing.
        console: Serve the operator console at ``/console``. It signs users in with their
            API keys itself (a session cookie), whatever ``authenticate`` is.
        console_secret: Signs the console's session cookies (32 bytes or more). ``None``:
            a random one per process, so sessions end on restart; every process serving
            the same users needs the same secret (``dotmac-bl serve`` reads
            ``DOTMAC_CONSOLE_SECRET``).

    Returns:
        The FastAPI application; its OpenAPI document is at ``/v1/openapi.json``.
    """
    wall = as_clock(clock)
    engine = policy_engine if policy_engine is not None else _shipped_engine()
    services = ApiServices(
        session_factory=session_factory,
        coordinator=shipped_coordinator(session_factory, lease_seconds=lease_seconds, clock=wall),
        policy_engine=engine,
        eligibility=PlanEligibilityEngine(engine),
        clock=wall,
        lease_seconds=lease_seconds,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        worker = (
            SagaWorker(
                shipped_coordinator(session_factory, lease_seconds=lease_seconds, clock=wall),
                poll_interval=worker_poll_interval,
            )
            if recovery_worker
            else None
        )
        running = asyncio.create_task(worker.run(), name="saga recovery worker") if worker else None
        try:
            yield
        finally:
            if worker is not None and running is not None:
                worker.stop()
                await running
            # Requests' background runs stop here; their sagas' leases expire and a worker
            # (this app's next start, or `dotmac-bl worker`) finishes them.
            for task in list(services.background):
                task.cancel()
            await asyncio.gather(*services.background, return_exceptions=True)

    app = FastAPI(
        title="DotMac business logic API",
        version=API_VERSION,
        description=(
            "Policies, provisioning, sagas and billing runs of the DotMac platform. "
            "Authenticate with `Authorization: Bearer <API key>` (`dotmac-bl apikey create`). "
            "Errors are RFC 9457 Problem Details (`application/problem+json`). "
            "`X-Request-ID` or `traceparent` sets the correlation id of a request."
        ),
        openapi_url="/v1/openapi.json",
        lifespan=lifespan,
    )
    app.state.dotmac = services
    install_problem_handlers(app)
    for module in (_routes_policies, _routes_provisioning, _routes_sagas, _routes_billing):
        app.include_router(module.router)
    public_prefixes: tuple[str, ...] = ()
    if console:
        # Imported here: only an app with the console loads its views and templates.
        from dotmac_shared.business_logic.console import create_console

        app.mount(CONSOLE_PATH, create_console(services, secret=console_secret))
        public_prefixes = (CONSOLE_PATH + "/",)
    # Starlette runs the last added middleware first.
    app.add_middleware(
        IdempotencyMiddleware,
        manager=IdempotencyManager(session_factory, clock=wall),
        lease_seconds=idempotency_lease_seconds,
        ttl=idempotency_ttl,
        operation_type="http_v1",
    )
    app.add_middleware(
        AuthenticationMiddleware,
        authenticate=authenticate or ApiKeyAuthenticator(session_factory),
        public_paths=PUBLIC_PATHS | {CONSOLE_PATH} if console else PUBLIC_PATHS,
        public_prefixes=public_prefixes,
    )
    app.add_middleware(CorrelationMiddleware)
    return app
