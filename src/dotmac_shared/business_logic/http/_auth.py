"""Who is calling: a pluggable ``authenticate`` callable, bearer API keys by default.

``authenticate`` takes the request and returns a :class:`Principal` (tenant, user, roles),
or raises a ``BusinessLogicError`` (``AuthenticationError``: 401, ``PermissionDeniedError``:
403; Starlette's ``HTTPException`` is accepted too, for existing callables). The
:class:`AuthenticationMiddleware` runs it before anything else of the request, puts the
principal in ``request.state.principal`` (where the Idempotency-Key middleware finds the
tenant that scopes its keys) and answers a refusal with Problem Details.

Every route then acts for ``principal.tenant_id`` only: another tenant's saga, customer or
billing run is reported exactly like a missing one (404).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Collection
from typing import Annotated, Any, Final

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from dotmac_shared.business_logic.exceptions import (
    AuthenticationError,
    BusinessLogicError,
    PermissionDeniedError,
)
from dotmac_shared.business_logic.http._api_keys import verify_api_key
from dotmac_shared.business_logic.http._problems import problem_response

__all__ = [
    "PUBLIC_PATHS",
    "ApiKeyAuthenticator",
    "Authenticate",
    "AuthenticationMiddleware",
    "Principal",
    "current_principal",
    "require_role",
]

#: Paths that need no credentials: the API's description and its documentation pages.
PUBLIC_PATHS: Final = frozenset({"/v1/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})

#: The ``WWW-Authenticate`` challenge of a 401 (RFC 6750, section 3).
_CHALLENGE: Final = 'Bearer realm="dotmac"'


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller.

    Attributes:
        tenant_id: The one tenant whose data the caller reaches.
        user_id: Who it is (``apikey:<key id>`` for an API key), recorded on sagas.
        roles: What it may do: ``operator`` (read, evaluate, provision services, bill) and
            ``admin`` (also provision tenants, cancel sagas).
    """

    tenant_id: str
    user_id: str | None = None
    roles: frozenset[str] = frozenset()


#: The pluggable authentication: a request in, the principal out (or an HTTP refusal).
Authenticate = Callable[[Request], Awaitable[Principal]]


def _unauthorized(detail: str) -> AuthenticationError:
    return AuthenticationError(detail, challenge=_CHALLENGE)


class ApiKeyAuthenticator:
    """The default ``authenticate``: ``Authorization: Bearer dmk_...`` checked against the store.

    Args:
        session_factory: Where ``dotmac_api_keys`` lives.
    """

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        self.session_factory = session_factory

    async def __call__(self, request: Request) -> Principal:
        """Return the key's principal.

        Raises:
            AuthenticationError: Without a bearer token, or with one that is malformed,
                unknown, wrong or revoked (one message for the last three: no oracle for
                key ids).
        """
        header = request.headers.get("authorization")
        if header is None:
            raise _unauthorized("this API needs an API key: Authorization: Bearer <key>")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _unauthorized("the Authorization header must be: Bearer <key>")
        key = await verify_api_key(self.session_factory, token.strip())
        if key is None:
            raise _unauthorized("the API key is not valid (unknown, malformed or revoked)")
        return Principal(tenant_id=key.tenant_id, user_id=f"apikey:{key.key_id}", roles=key.roles)


class AuthenticationMiddleware:
    """ASGI middleware that authenticates every HTTP request outside :data:`PUBLIC_PATHS`.

    Add it after (so that it runs before) the Idempotency-Key middleware: that one scopes
    its keys by ``scope["state"]["principal"].tenant_id``.

    Args:
        app: The ASGI app to wrap.
        authenticate: The request-to-principal callable.
        public_paths: Paths served without credentials.
        public_prefixes: Path prefixes served without them (``create_app`` passes the
            console's ``/console/``: it signs its users in itself, with a session cookie).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticate: Authenticate,
        public_paths: Collection[str] = PUBLIC_PATHS,
        public_prefixes: Collection[str] = (),
    ) -> None:
        self.app = app
        self.authenticate = authenticate
        self.public_paths = frozenset(public_paths)
        self.public_prefixes = tuple(public_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate one HTTP request, then pass it on (or answer the refusal)."""
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if (
            scope["type"] != "http"
            or path in self.public_paths
            or (self.public_prefixes and path.startswith(self.public_prefixes))
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            principal = await self.authenticate(request)
            if not isinstance(principal, Principal):
                raise TypeError(
                    f"authenticate must return a Principal, not {type(principal).__name__}"
                )
        except (HTTPException, BusinessLogicError) as exc:
            await problem_response(exc, request)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from `dotmac-bl apikey create --tenant T`: `Bearer dmk_...`.",
)


async def current_principal(
    request: Request,
    # Declared so that OpenAPI documents the bearer scheme; the middleware did the checking.
    _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> Principal:
    """The FastAPI dependency giving a route its caller.

    Raises:
        AuthenticationError: No :class:`AuthenticationMiddleware` authenticated the request
            (the route is served without it).
    """
    principal: Any = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise _unauthorized("this request was not authenticated")
    return principal


def require_role(role: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that lets only principals with ``role`` through.

    Raises ``PermissionDeniedError`` (403, ``required_role`` in its context) otherwise.

    Example:
        >>> AdminPrincipal = Annotated[Principal, Depends(require_role("admin"))]
    """

    async def dependency(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        if role not in principal.roles:
            raise PermissionDeniedError(
                f"this operation needs the {role} role",
                required_role=role,
                tenant_id=principal.tenant_id,
                user_id=principal.user_id,
            )
        return principal

    return dependency
