"""The console's session: a signed cookie, and the CSRF token it carries. Pure: no I/O.

The cookie holds a small JSON document, base64url-encoded, then ``.`` and the HMAC-SHA256 of
that text under a server secret. Nothing secret is in it (the API key's id, never its token),
but a visitor cannot forge or alter one without the secret: :meth:`SessionCodec.decode`
returns ``None`` for any cookie whose MAC does not match, that does not parse, or that is
older than ``max_age``.

Every session, signed in or not, carries a random CSRF token. Each form of the console
sends it back in a hidden field, and every POST is refused (403) unless the field equals the
token of the cookie (:func:`csrf_matches`, a constant-time comparison). A page of another
site can make the browser send the cookie, but cannot read the token to put in the form.
Signing in issues a new token (a token seen before signing in is worth nothing after).

Example:
    >>> codec = SessionCodec(b"0" * 32)
    >>> session = ConsoleSession.anonymous(issued_at=1_000)
    >>> codec.decode(codec.encode(session), now=1_001) == session
    True
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import secrets
from typing import Any, Final

__all__ = ["ConsoleSession", "SessionCodec", "csrf_matches", "new_csrf_token"]

#: How long a session lasts after sign-in by default: a working day.
DEFAULT_MAX_AGE: Final = 8 * 3600
#: Longest cookie value decoded (a browser keeps at most 4096 bytes per cookie anyway).
_MAX_COOKIE_CHARS: Final = 4096


def new_csrf_token() -> str:
    """A fresh random CSRF token (256 bits)."""
    return secrets.token_urlsafe(32)


def csrf_matches(expected: str, given: str | None) -> bool:
    """Whether a form's token equals the session's, compared in constant time."""
    if not given or not expected:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


@dataclasses.dataclass(frozen=True, slots=True)
class ConsoleSession:
    """What the cookie says: the CSRF token, and who signed in (if anyone).

    Attributes:
        csrf: The session's CSRF token.
        issued_at: When the cookie was issued (seconds since the epoch, from the clock).
        key_id: The API key signed in with (``None``: not signed in). The key is read again
            on every request, so that revoking it ends the session.
    """

    csrf: str
    issued_at: int
    key_id: str | None = None

    @classmethod
    def anonymous(cls, *, issued_at: int) -> ConsoleSession:
        """A session with a fresh CSRF token and nobody signed in."""
        return cls(csrf=new_csrf_token(), issued_at=issued_at)

    @classmethod
    def signed_in(cls, key_id: str, *, issued_at: int) -> ConsoleSession:
        """A session for ``key_id`` with a fresh CSRF token."""
        return cls(csrf=new_csrf_token(), issued_at=issued_at, key_id=key_id)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    """Signs sessions into cookie values and checks them back.

    Args:
        secret: The server secret (at least 32 bytes). Every process that serves the console
            for the same users needs the same one; a new secret ends every session.
        max_age: Seconds a cookie is accepted after it was issued.
    """

    def __init__(self, secret: bytes, *, max_age: int = DEFAULT_MAX_AGE) -> None:
        if len(secret) < 32:
            raise ValueError("the console's session secret must be at least 32 bytes")
        if max_age <= 0:
            raise ValueError("max_age must be positive")
        self._secret = secret
        self.max_age = max_age

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode("ascii"), hashlib.sha256).digest())

    def encode(self, session: ConsoleSession) -> str:
        """The cookie value of ``session``."""
        body: dict[str, Any] = {"c": session.csrf, "t": session.issued_at}
        if session.key_id is not None:
            body["k"] = session.key_id
        payload = _b64(json.dumps(body, separators=(",", ":")).encode("utf-8"))
        return f"{payload}.{self._mac(payload)}"

    def decode(self, value: str | None, *, now: int) -> ConsoleSession | None:
        """The session of a cookie value, or ``None`` if it is forged, malformed or expired."""
        if not value or len(value) > _MAX_COOKIE_CHARS:
            return None
        payload, dot, mac = value.partition(".")
        if not dot or not payload.isascii() or not mac.isascii():
            return None
        if not hmac.compare_digest(self._mac(payload), mac):
            return None
        try:
            body = json.loads(_unb64(payload))
        except (binascii.Error, ValueError):
            return None
        if not isinstance(body, dict):
            return None
        csrf, issued, key_id = body.get("c"), body.get("t"), body.get("k")
        if not isinstance(csrf, str) or isinstance(issued, bool) or not isinstance(issued, int):
            return None
        if key_id is not None and not isinstance(key_id, str):
            return None
        if not issued <= now < issued + self.max_age:
            return None
        return ConsoleSession(csrf=csrf, issued_at=issued, key_id=key_id)
