"""The ``Idempotency-Key`` header (draft-ietf-httpapi-idempotency-key-header-07) as ASGI middleware.

:class:`IdempotencyMiddleware` wraps any ASGI app (Starlette, FastAPI, ...). For a request whose
method it covers (``POST`` and ``PATCH`` by default) and that carries the header, it claims the
key through an :class:`~dotmac_shared.business_logic.idempotency.IdempotencyManager` (so on any of
its stores: SQL on SQLite or PostgreSQL, or Redis), runs the app once, and stores the response:

- The key is a Structured Field String (``Idempotency-Key: "8e03978e-40d5"``); a bare token is
  accepted too. Anything else: 400.
- The key is scoped by tenant (``tenant_resolver``): two tenants' equal keys are independent.
- The request's fingerprint is its method, path, query string and the SHA-256 of its body.
  The same key with another fingerprint: 422, nothing runs, nothing is replayed.
- The same key while its first request runs: 409 with ``Retry-After``, the manager's estimate
  from the durations it has observed (never past the running request's lease).
- The same key after the first request finished: its stored status, headers and whole body
  (any content type; a streamed body is stored whole), plus ``Idempotent-Replayed: true``.
  The first response itself is streamed through to its client as the app sends it, all but
  its last body message, which goes out once the response is stored (or the key released):
  a client that retries as soon as it has the response finds it stored, never a 409.
- Responses that a retry may change are not stored: every 5xx, and 408, 409, 425 and 429 (the
  default ``store_status``). The key is released at once, so the client's retry runs the
  request again; the draft leaves this to the server, and a stored 503 would turn a passing
  outage into a permanent failure for that key.
- A request that raises, or whose process dies, never blocks its key past its lease: a raise
  releases the key at once; a killed process's claim is taken over by the first request after
  ``lease_seconds`` (renewed every third of it while the request runs, so a slow request
  keeps its key). Time comes from the manager's clock.
- A stored response is replayed for ``ttl`` (default 24 hours); after that the key is free.

Every error is ``application/problem+json`` (:mod:`._problems`). A route that requires the
header declares the FastAPI dependency :func:`require_idempotency_key` (400 when it is missing),
or the middleware is given ``required=True``.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import inspect
import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Any, Final

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dotmac_shared.business_logic.exceptions import BusinessLogicError, IdempotencyError
from dotmac_shared.business_logic.http._errors import (
    IdempotencyKeyInvalidError,
    IdempotencyKeyMissingError,
    RequestBodyTooLargeError,
)
from dotmac_shared.business_logic.http._problems import (
    DEFAULT_PROBLEM_TYPE_BASE,
    problem_response,
)
from dotmac_shared.business_logic.idempotency import IdempotencyManager, IdempotentOperation
from dotmac_shared.business_logic.observability._log import get_logger

__all__ = [
    "DEFAULT_TENANT",
    "IDEMPOTENCY_HEADER",
    "REPLAYED_HEADER",
    "IdempotencyMiddleware",
    "TenantResolver",
    "default_store_status",
    "idempotency_key_of",
    "parse_idempotency_key",
    "tenant_from_scope",
]

IDEMPOTENCY_HEADER: Final = "Idempotency-Key"
REPLAYED_HEADER: Final = "Idempotent-Replayed"
#: The tenant of a request for which the resolver finds none (an app without tenants).
DEFAULT_TENANT: Final = "default"
#: Where the middleware leaves the parsed key in ``scope["state"]`` for the app.
STATE_KEY: Final = "idempotency_key"

_HEADER_BYTES: Final = IDEMPOTENCY_HEADER.lower().encode("latin-1")
_REPLAYED: Final = (REPLAYED_HEADER.lower().encode("latin-1"), b"true")
_MAX_KEY_LENGTH: Final = 255
# Extensions that let an app send a file without body messages the middleware could keep.
_UNKEEPABLE_EXTENSIONS: Final = frozenset({"http.response.pathsend", "http.response.zerocopy"})

# RFC 8941: sf-string = DQUOTE *( unescaped / "%" / "\" ( DQUOTE / "\" ) ) DQUOTE, printable
# ASCII only; sf-token = ( ALPHA / "*" ) *( tchar / ":" / "/" ). An Item may carry parameters,
# which this header does not define, so they are accepted and ignored.
_STRING = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*"'
_TOKEN = r"[A-Za-z*][!#$%&'*+\-.^_`|~0-9A-Za-z:/]*"
_BARE_ITEM = rf"(?:{_STRING}|{_TOKEN}|-?[0-9]{{1,15}}(?:\.[0-9]{{1,3}})?|\?[01]|:[A-Za-z0-9+/=]*:)"
_PARAMETERS = rf"(?:;[ ]*[a-z*][a-z0-9_\-.*]*(?:={_BARE_ITEM})?)*"
_ITEM = re.compile(rf"[ \t]*(?P<string>{_STRING})?(?P<token>{_TOKEN})?{_PARAMETERS}[ \t]*")
_ESCAPE = re.compile(r"\\(.)")

#: Resolves a request's tenant from its ASGI scope; may be async (e.g. look up an API key).
TenantResolver = Callable[[Scope], "str | None | Awaitable[str | None]"]

_logger = get_logger(__name__)


def parse_idempotency_key(value: str) -> str:
    r"""Return the key of an ``Idempotency-Key`` field value.

    The value is a Structured Field String (RFC 8941 section 3.3.3): printable ASCII between
    double quotes, with ``\"`` and ``\\`` as its only escapes. A bare token is accepted
    as the key itself. Parameters are ignored.

    Raises:
        IdempotencyKeyInvalidError: The value is neither, the key is empty or blank, or
            longer than 255 characters.

    Example:
        >>> parse_idempotency_key('"8e03978e-40d5-43e8"')
        '8e03978e-40d5-43e8'
        >>> parse_idempotency_key('"say \\"hi\\""')
        'say "hi"'
    """
    match = _ITEM.fullmatch(value)
    if match is None or (match["string"] is None) == (match["token"] is None):
        raise IdempotencyKeyInvalidError(
            f"{IDEMPOTENCY_HEADER} must be a Structured Field String such as "
            '"8e03978e-40d5-43e8" (printable ASCII in double quotes)',
            metadata={"header": IDEMPOTENCY_HEADER},
        )
    string = match["string"]
    key = match["token"] if string is None else _ESCAPE.sub(r"\1", string[1:-1])
    if not key.strip() or len(key) > _MAX_KEY_LENGTH:
        raise IdempotencyKeyInvalidError(
            f"{IDEMPOTENCY_HEADER} must hold 1 to {_MAX_KEY_LENGTH} characters, not only blanks",
            metadata={"header": IDEMPOTENCY_HEADER},
        )
    return key


def _header_values(scope: Scope, name: bytes) -> list[bytes]:
    return [value for key, value in scope["headers"] if key.lower() == name]


def tenant_from_scope(scope: Scope) -> str | None:
    """The default tenant resolver: the authenticated principal's tenant, else ``X-Tenant-ID``.

    Looks, in order, at ``scope["state"]["principal"]`` (an object with a ``tenant_id``
    attribute or a mapping with a ``"tenant_id"`` key, as set by an authentication middleware
    that runs before this one), at ``scope["state"]["tenant_id"]``, then at the
    ``X-Tenant-ID`` header. The header is only right for apps that have no authentication:
    a caller could name another tenant in it; give the middleware a resolver that
    authenticates otherwise.
    """
    state = scope.get("state") or {}
    principal = state.get("principal")
    if principal is not None:
        tenant = (
            principal.get("tenant_id")
            if isinstance(principal, Mapping)
            else getattr(principal, "tenant_id", None)
        )
        if tenant is not None:
            return str(tenant)
    tenant = state.get("tenant_id")
    if tenant is not None:
        return str(tenant)
    values = _header_values(scope, b"x-tenant-id")
    return values[0].decode("latin-1") if values else None


def default_store_status(status: int) -> bool:
    """Whether a response of ``status`` is stored and replayed (the middleware's default).

    Every status but a 5xx and the client errors that a retry may cure: 408 Request Timeout,
    409 Conflict, 425 Too Early and 429 Too Many Requests.
    """
    return status < 500 and status not in (408, 409, 425, 429)


def idempotency_key_of(request: Request) -> str | None:
    """The key :class:`IdempotencyMiddleware` handled for ``request``, or ``None``."""
    key = request.scope.get("state", {}).get(STATE_KEY)
    return key if isinstance(key, str) else None


class _Unstored(Exception):
    """The app answered, but with a response that must not be stored: release the key."""


class _AppRaised(Exception):
    """The app raised: carried through the manager (which releases the key), then re-raised."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


class _ForwardToApp(IdempotentOperation):
    """Runs the app for one request, streaming its response out while keeping a copy."""

    max_attempts = 1
    cache_failures = False

    def __init__(
        self,
        owner: IdempotencyMiddleware,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        self.operation_type = owner.operation_type  # type: ignore[misc]
        self.lease_seconds = owner.lease_seconds
        self.ttl = owner.ttl
        self._owner = owner
        self._scope = scope
        self._receive = receive
        self._send = send
        self.started = False  # the response has begun: no problem response can follow it
        # The response's last message, held back until the response is stored or released.
        self.last: Message | None = None

    async def execute(
        self, operation_data: Mapping[str, Any], context: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """Run the app; return its response as a storable mapping."""
        status = 0
        headers: list[list[str]] = []
        chunks: list[bytes] = []

        async def keep_and_send(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "http.response.start":
                self.started = True
                status = message["status"]
                headers.extend(
                    [name.decode("latin-1"), value.decode("latin-1")]
                    for name, value in message.get("headers", ())
                )
            elif kind == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self.last = message
                    return
            await self._send(message)

        try:
            await self._owner.app(self._scope, self._receive, keep_and_send)
        except Exception as exc:  # noqa: BLE001 - re-raised unchanged by the middleware
            raise _AppRaised(exc) from exc
        if not status or not self._owner.store_status(status):
            raise _Unstored
        return {
            "status": status,
            "headers": headers,
            "body": base64.b64encode(b"".join(chunks)).decode("ascii"),
        }

    async def end_response(self) -> None:
        """Send the response's last message, once its fate in the store is settled."""
        last, self.last = self.last, None
        if last is not None:
            await self._send(last)


class IdempotencyMiddleware:
    """Pure ASGI middleware that makes keyed requests run once and replay their response.

    See the module docstring for the behaviour. Add it outside any authentication middleware
    whose principal names the tenant (Starlette runs the last added middleware first)::

        app.add_middleware(IdempotencyMiddleware, manager=IdempotencyManager(session_factory))

    Args:
        app: The ASGI app to wrap.
        manager: The manager (and so the store and the clock) that keeps the keys.
        methods: The methods whose requests are keyed; others pass through untouched.
        required: ``True`` (or a predicate of the scope) to answer 400 to a covered request
            without the header. Per route, use :func:`require_idempotency_key` instead.
        tenant_resolver: The tenant of a request (:func:`tenant_from_scope` by default);
            ``None`` from it means :data:`DEFAULT_TENANT`.
        lease_seconds: How long a claim outlives its holder's last renewal: after a crash,
            the key is blocked for at most this long.
        ttl: How long a stored response is replayed.
        store_status: Which response statuses are stored (:func:`default_store_status`).
        max_body_bytes: The largest request body hashed; a larger keyed request gets 413.
        operation_type: The name the manager files the keys under (and averages their
            durations under, for ``Retry-After``).
        type_base: Prefix of the problem ``type`` URLs.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        manager: IdempotencyManager,
        methods: Collection[str] = ("POST", "PATCH"),
        required: bool | Callable[[Scope], bool] = False,
        tenant_resolver: TenantResolver = tenant_from_scope,
        lease_seconds: float = 30.0,
        ttl: dt.timedelta = dt.timedelta(hours=24),
        store_status: Callable[[int], bool] = default_store_status,
        max_body_bytes: int = 10 * 1024 * 1024,
        operation_type: str = "http_request",
        type_base: str = DEFAULT_PROBLEM_TYPE_BASE,
    ) -> None:
        if lease_seconds <= 0 or ttl <= dt.timedelta(0):
            raise IdempotencyError(
                "lease_seconds and ttl must be positive",
                metadata={"lease_seconds": lease_seconds, "ttl": ttl.total_seconds()},
            )
        self.app = app
        self.manager = manager
        self.methods = frozenset(method.upper() for method in methods)
        self.required = required
        self.tenant_resolver = tenant_resolver
        self.lease_seconds = lease_seconds
        self.ttl = ttl
        self.store_status = store_status
        self.max_body_bytes = max_body_bytes
        self.operation_type = operation_type
        self.type_base = type_base

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection."""
        if scope["type"] != "http" or scope["method"] not in self.methods:
            await self.app(scope, receive, send)
            return
        values = _header_values(scope, _HEADER_BYTES)
        if not values:
            if self._requires(scope):
                await self._problem(
                    IdempotencyKeyMissingError(
                        f"this request requires an {IDEMPOTENCY_HEADER} header"
                    ),
                    scope,
                    receive,
                    send,
                )
                return
            await self.app(scope, receive, send)
            return
        try:
            if len(values) > 1:
                raise IdempotencyKeyInvalidError(
                    f"a request carries one {IDEMPOTENCY_HEADER} header, not {len(values)}"
                )
            key = parse_idempotency_key(values[0].decode("latin-1"))
            body = await self._read_body(receive)
        except BusinessLogicError as exc:
            await self._problem(exc, scope, receive, send)
            return
        if body is None:  # the client went away before sending its body: nothing to run
            return
        await self._run_once(key, body, scope, receive, send)

    def _requires(self, scope: Scope) -> bool:
        return self.required(scope) if callable(self.required) else self.required

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise RequestBodyTooLargeError(
                    f"a request with an {IDEMPOTENCY_HEADER} may have at most "
                    f"{self.max_body_bytes} bytes of body",
                    field="body",
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _tenant(self, scope: Scope) -> str:
        tenant = self.tenant_resolver(scope)
        if inspect.isawaitable(tenant):
            tenant = await tenant
        return DEFAULT_TENANT if tenant is None else tenant

    async def _run_once(
        self, key: str, body: bytes, scope: Scope, receive: Receive, send: Send
    ) -> None:
        scope = dict(scope)
        scope["state"] = {**(scope.get("state") or {}), STATE_KEY: key}
        extensions = scope.get("extensions")
        if extensions and not _UNKEEPABLE_EXTENSIONS.isdisjoint(extensions):
            # Without them a file response arrives as body messages, which can be stored.
            scope["extensions"] = {
                name: value
                for name, value in extensions.items()
                if name not in _UNKEEPABLE_EXTENSIONS
            }
        fingerprint = {
            "method": scope["method"],
            "path": scope["path"],
            "query": scope.get("query_string", b"").decode("latin-1"),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        operation = _ForwardToApp(self, scope, _replaying(body, receive), send)
        try:
            tenant = await self._tenant(scope)
            result = await self.manager.execute_idempotent(
                key,
                fingerprint,
                {"tenant_id": tenant},
                operation=operation,
                raise_on_failure=True,
            )
        except _AppRaised as raised:
            raise raised.error from None
        except _Unstored:
            await operation.end_response()  # the key is released: a retry runs again
            return
        except BusinessLogicError as exc:
            if not operation.started:
                await self._problem(exc, scope, receive, send)
                return
            # The response has begun, but its copy could not be stored (or the lease was
            # taken over meanwhile): the key's lease runs out and a retry runs the request.
            _logger.error("response to idempotency key %r not stored: %s", key, exc)
            await operation.end_response()
            return
        if result.from_cache and result.data is not None:
            await _replay(result.data, send)
        else:
            await operation.end_response()

    async def _problem(
        self, exc: BaseException, scope: Scope, receive: Receive, send: Send
    ) -> None:
        response = problem_response(exc, Request(scope), type_base=self.type_base)
        await response(scope, receive, send)


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body already read, then the client's later messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # e.g. http.disconnect
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _replay(stored: Mapping[str, Any], send: Send) -> None:
    headers = [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in stored["headers"]
    ]
    headers.append(_REPLAYED)
    await send({"type": "http.response.start", "status": stored["status"], "headers": headers})
    await send({"type": "http.response.body", "body": base64.b64decode(stored["body"])})
