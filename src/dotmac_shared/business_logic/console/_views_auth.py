"""Signing in with an API key, signing out, and the console's front door."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from dotmac_shared.business_logic.console._auth import ConsoleUser
from dotmac_shared.business_logic.console._session import ConsoleSession
from dotmac_shared.business_logic.http._api_keys import verify_api_key

if TYPE_CHECKING:
    from dotmac_shared.business_logic.console._app import Console, Visit

__all__ = ["routes"]

#: One message for an unknown, malformed, wrong or revoked key: no oracle for key ids.
INVALID_KEY = "That API key is not valid (unknown, malformed or revoked)."


def _next_path(value: str | None, base: str) -> str:
    """Where to go after signing in: a path inside the console, else the saga list.

    Only a path under the console's own prefix is followed, never another site
    (``//evil.example`` or ``https://...``): no open redirect.
    """
    if value and value.startswith(base + "/") and not value.startswith("//") and "\\" not in value:
        return value[len(base) :]
    return "/sagas"


async def home(console: Console, visit: Visit) -> Response:
    """The front door: the saga list."""
    return console.redirect(visit, "/sagas")


async def login_form(console: Console, visit: Visit) -> Response:
    """The sign-in form (it also issues the anonymous session whose CSRF token it carries)."""
    return console.render(
        visit,
        "login.html",
        title="Sign in",
        next=visit.request.query_params.get("next", ""),
        message=None,
    )


async def login(console: Console, visit: Visit) -> Response:
    """Check the key; on success start a signed-in session with a new CSRF token."""
    token = visit.form.get("api_key", "").strip()
    key = await verify_api_key(console.services.session_factory, token) if token else None
    if key is None:
        return console.render(
            visit,
            "login.html",
            status=401,
            title="Sign in",
            next=visit.form.get("next", ""),
            message=INVALID_KEY if token else "Enter an API key.",
        )
    visit.session = ConsoleSession.signed_in(key.key_id, issued_at=console.now())
    visit.user = ConsoleUser.of(key)
    visit.set_cookie = True
    return console.redirect(visit, _next_path(visit.form.get("next"), visit.base))


async def logout(console: Console, visit: Visit) -> Response:
    """End the session: a new anonymous one replaces it."""
    visit.session = ConsoleSession.anonymous(issued_at=console.now())
    visit.user = None
    visit.set_cookie = True
    return console.redirect(visit, "/login")


def routes(console: Console) -> list[BaseRoute]:
    """The sign-in routes."""
    return [
        Route("/", console.view(home, signed_in=False), methods=["GET"]),
        Route("/login", console.view(login_form, signed_in=False), methods=["GET"]),
        Route("/login", console.view(login, signed_in=False), methods=["POST"]),
        Route("/logout", console.view(logout, signed_in=False), methods=["POST"]),
    ]
