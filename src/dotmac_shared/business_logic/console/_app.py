"""The console's ASGI app: sessions, CSRF, rendering and error pages around the views.

:func:`create_console` returns a Starlette app that ``create_app`` mounts at ``/console``
beside the ``/v1`` API, on the same :class:`~dotmac_shared.business_logic.http.ApiServices`
(coordinator, session factory, policy engine, clock). Every view goes through
:meth:`Console.view`, which reads the session cookie, sends a visitor who is not signed in
to the sign-in page, checks the CSRF token of every POST before the view runs (403, nothing
done, otherwise), and turns a ``BusinessLogicError`` into a page with its HTTP status.
"""

from __future__ import annotations

import dataclasses
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from dotmac_shared.business_logic.console import (
    _views_auth,
    _views_billing,
    _views_policies,
    _views_sagas,
)
from dotmac_shared.business_logic.console._auth import ConsoleUser, load_user
from dotmac_shared.business_logic.console._forms import MAX_FORM_BYTES, parse_form
from dotmac_shared.business_logic.console._session import (
    DEFAULT_MAX_AGE,
    ConsoleSession,
    SessionCodec,
    csrf_matches,
)
from dotmac_shared.business_logic.exceptions import BusinessLogicError, InvalidInputError
from dotmac_shared.business_logic.http._problems import problem_status
from dotmac_shared.business_logic.http._state import ApiServices
from dotmac_shared.business_logic.observability import get_correlation_id

__all__ = ["COOKIE_NAME", "Console", "Visit", "create_console"]

#: The session cookie's name.
COOKIE_NAME: Final = "dotmac_console"
_HERE = Path(__file__).parent
#: Headers of every console page: no framing (clickjacking), no sniffing, no caching of
#: pages that show tenants' data, and only the console's own scripts and styles.
_SECURITY_HEADERS: Final = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


@dataclasses.dataclass
class Visit:
    """One request to the console: its session, its user and, for a POST, its form.

    Attributes:
        request: The request.
        session: The session (a new anonymous one if the cookie was missing or invalid).
        user: Who signed in, or ``None``.
        base: The console's URL path (``/console`` under the API's root path).
        form: A POST's form fields (CSRF already checked).
        set_cookie: Whether the response must (re)issue the session cookie.
    """

    request: Request
    session: ConsoleSession
    user: ConsoleUser | None
    base: str
    form: dict[str, str] = dataclasses.field(default_factory=dict)
    set_cookie: bool = False

    @property
    def signed_in_user(self) -> ConsoleUser:
        """The user, for views that run only signed in."""
        if self.user is None:  # Console.view sends visitors to the sign-in page first
            raise RuntimeError("this view needs a signed-in user")
        return self.user


View = Callable[["Console", Visit], Awaitable[Response]]


class Console:
    """The console's shared parts: services, session codec, templates.

    Args:
        services: The API app's services.
        secret: The session-signing secret.
        max_age: Seconds a session lasts.
    """

    def __init__(self, services: ApiServices, *, secret: bytes, max_age: int) -> None:
        self.services = services
        self.codec = SessionCodec(secret, max_age=max_age)
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(_HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def now(self) -> int:
        """Now, in whole seconds since the epoch, from the app's clock."""
        return int(self.services.clock.now().timestamp())

    # --- responses ---------------------------------------------------------------------

    def _finish(self, visit: Visit, response: Response) -> Response:
        response.headers.update(_SECURITY_HEADERS)
        if visit.set_cookie:
            response.set_cookie(
                COOKIE_NAME,
                self.codec.encode(visit.session),
                max_age=self.codec.max_age,
                path=visit.base or "/",
                httponly=True,
                samesite="lax",
                secure=visit.request.url.scheme == "https",
            )
        return response

    def render(self, visit: Visit, template: str, *, status: int = 200, **context: Any) -> Response:
        """A page of ``template`` with the layout's context (user, CSRF token, base path)."""
        html = self.templates.get_template(template).render(
            base=visit.base,
            user=visit.user,
            csrf_token=visit.session.csrf,
            path=visit.request.url.path,
            **context,
        )
        return self._finish(visit, HTMLResponse(html, status_code=status))

    def redirect(self, visit: Visit, to: str) -> Response:
        """A 303 to ``to`` (a path under the console): after a POST, the browser GETs it."""
        return self._finish(visit, RedirectResponse(visit.base + to, status_code=303))

    def error(
        self, visit: Visit, exc: BusinessLogicError, *, status: int | None = None
    ) -> Response:
        """The error page of ``exc``: its message, code and HTTP status."""
        code = status or problem_status(exc)
        return self.render(
            visit, "error.html", status=code, title=_TITLES.get(code, "Error"), error=exc
        )

    def server_error_page(self, request: Request) -> Response:
        """The 500 page of an unexpected failure: no internals, the request's correlation id.

        Rendered without the session (reading it may be what failed): the layout shows no
        user and no sign-out form.
        """
        html = self.templates.get_template("error.html").render(
            base=str(request.scope.get("root_path", "")).rstrip("/"),
            user=None,
            csrf_token="",
            path=request.url.path,
            title="Server error",
            error=BusinessLogicError(
                "the console could not show this page; the error is logged under "
                f"correlation id {get_correlation_id()}"
            ),
        )
        response = HTMLResponse(html, status_code=500)
        response.headers.update(_SECURITY_HEADERS)
        return response

    # --- the request pipeline ------------------------------------------------------------

    async def _visit(self, request: Request) -> Visit:
        base = str(request.scope.get("root_path", "")).rstrip("/")
        session = self.codec.decode(request.cookies.get(COOKIE_NAME), now=self.now())
        fresh = session is None
        if session is None:
            session = ConsoleSession.anonymous(issued_at=self.now())
        user = None
        if session.key_id is not None:
            user = await load_user(self.services.session_factory, session.key_id)
            if user is None:  # the key was revoked (or deleted): the session ends here
                session = ConsoleSession.anonymous(issued_at=self.now())
                fresh = True
        return Visit(request=request, session=session, user=user, base=base, set_cookie=fresh)

    def view(
        self, handler: View, *, signed_in: bool = True
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap ``handler`` into a Starlette endpoint (sessions, sign-in, CSRF, errors)."""

        async def endpoint(request: Request) -> Response:
            visit = await self._visit(request)
            if signed_in and visit.user is None:
                target = request.url.path
                if request.url.query:
                    target += "?" + request.url.query
                query = urllib.parse.urlencode({"next": target})
                return self.redirect(visit, f"/login?{query}")
            if request.method == "POST":
                refusal = await self._read_form(visit)
                if refusal is not None:
                    return refusal
            try:
                return await handler(self, visit)
            except BusinessLogicError as exc:
                return self.error(visit, exc)

        return endpoint

    async def _read_form(self, visit: Visit) -> Response | None:
        """Read a POST's form into ``visit.form``; a refusal page if it cannot be taken."""
        request = visit.request
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return self.error(
                visit,
                InvalidInputError(
                    "the console takes forms (application/x-www-form-urlencoded) only",
                    field="content-type",
                ),
                status=415,
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                return self.error(
                    visit,
                    InvalidInputError(
                        f"the form is larger than {MAX_FORM_BYTES // 1024} KiB", field="body"
                    ),
                    status=413,
                )
        try:
            form = parse_form(bytes(body))
        except InvalidInputError as exc:
            return self.error(visit, exc, status=400)
        # Checked before any view runs: a forged form changes nothing.
        if not csrf_matches(visit.session.csrf, form.get("csrf_token")):
            return self.render(
                visit,
                "error.html",
                status=403,
                title="Forbidden",
                error=BusinessLogicError(
                    "the form's security token is missing or out of date: reload the page "
                    "and submit it again"
                ),
            )
        visit.form = form
        return None


_TITLES: Final = {
    400: "Bad request",
    401: "Sign-in needed",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Too large",
    415: "Unsupported form",
    422: "Refused",
    503: "Unavailable",
}


def create_console(
    services: ApiServices,
    *,
    secret: bytes | str | None = None,
    max_age: int = DEFAULT_MAX_AGE,
) -> Starlette:
    """The operator console as an ASGI app, to mount at ``/console`` (``create_app`` does).

    Args:
        services: The API app's services (``app.state.dotmac``).
        secret: Signs the session cookies (32 bytes or more; a string is UTF-8 encoded).
            ``None``: a random one for this process, so sessions end when it restarts; give
            every process that serves the same users the same secret.
        max_age: Seconds a session lasts (8 hours by default).

    Returns:
        The console app.

    Raises:
        InvalidInputError: ``secret`` is shorter than 32 bytes (field ``console_secret``).
    """
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    if key is not None and len(key) < 32:
        raise InvalidInputError(
            f"the console's session secret must be at least 32 bytes, not {len(key)}",
            field="console_secret",
        )
    console = Console(services, secret=key or secrets.token_bytes(32), max_age=max_age)

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        # Starlette re-raises ``exc`` after this page is sent, so the server still logs it in
        # full; the page shows no internals, only the id to find that log line by.
        return console.server_error_page(request)

    routes: list[BaseRoute] = [
        Mount("/static", app=StaticFiles(directory=_HERE / "static"), name="static"),
    ]
    for module in (_views_auth, _views_sagas, _views_billing, _views_policies):
        routes.extend(module.routes(console))
    return Starlette(routes=routes, exception_handlers={Exception: on_unexpected})
