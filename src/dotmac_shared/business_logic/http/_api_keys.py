"""API keys: created once (the token is shown only then), stored hashed, looked up by id.

A token reads ``dmk_<key id>_<secret>``: the key id (16 hex digits) finds the row with one
primary-key read, and the SHA-256 of the secret (256 random bits) is compared in constant
time. Only the digest is stored, so a copy of the table grants nothing.

Example:
    >>> created = await create_api_key(factory, "tenant123", role="admin")  # doctest: +SKIP
    >>> print(created.token)  # shown once  # doctest: +SKIP
    >>> (await verify_api_key(factory, created.token)).tenant_id  # doctest: +SKIP
    'tenant123'
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import re
import secrets
from typing import Any, Final

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.clock import Clock, as_clock
from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.http._models import ApiKey

__all__ = [
    "ROLES",
    "TOKEN_PREFIX",
    "ApiKeyInfo",
    "CreatedApiKey",
    "create_api_key",
    "list_api_keys",
    "revoke_api_key",
    "verify_api_key",
]

#: The roles a key can have; each can do everything the one before it can, and more:
#: ``operator`` reads, evaluates, provisions services and bills; ``admin`` also provisions
#: tenants and cancels or repairs sagas; ``platform`` (a platform operator) is an admin who,
#: in the operator console, sees and acts on every tenant's sagas and billing runs. The
#: ``/v1`` API still acts for the key's own tenant only, whatever its role.
ROLES: Final = ("operator", "admin", "platform")
#: What every token starts with (so that leaked tokens are easy to find by scanners).
TOKEN_PREFIX: Final = "dmk_"
_TOKEN = re.compile(r"dmk_(?P<key_id>[0-9a-f]{16})_(?P<secret>[A-Za-z0-9_-]{43})")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """An API key as stored (never its secret).

    Attributes:
        key_id: The key's public id (the token's middle part).
        tenant_id: The tenant whose data the key reaches.
        role: ``operator``, ``admin`` or ``platform`` (see :data:`ROLES`).
        name: A label, if one was given.
        created_at: When it was created.
        revoked_at: When it was revoked, if it was.
    """

    key_id: str
    tenant_id: str
    role: str
    name: str | None
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @property
    def roles(self) -> frozenset[str]:
        """The roles the key grants: its own and every one before it in :data:`ROLES`."""
        if self.role not in ROLES:
            return frozenset({self.role})
        return frozenset(ROLES[: ROLES.index(self.role) + 1])

    def to_dict(self) -> dict[str, Any]:
        """The key as a JSON-safe dict."""
        return {
            "key_id": self.key_id,
            "tenant_id": self.tenant_id,
            "role": self.role,
            "name": self.name,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }

    @classmethod
    def of(cls, row: ApiKey) -> ApiKeyInfo:
        """The info of a stored row."""
        return cls(row.key_id, row.tenant_id, row.role, row.name, row.created_at, row.revoked_at)


@dataclasses.dataclass(frozen=True, slots=True)
class CreatedApiKey:
    """A key just created: its info and the token, which is shown this once.

    Attributes:
        info: The stored key.
        token: The bearer token (``dmk_<key id>_<secret>``); not stored, not recoverable.
    """

    info: ApiKeyInfo
    token: str = dataclasses.field(repr=False)


async def create_api_key(
    session_factory: async_sessionmaker[AsyncSession],
    tenant_id: str,
    *,
    role: str = "operator",
    name: str | None = None,
    clock: Clock | None = None,
) -> CreatedApiKey:
    """Create a key for ``tenant_id`` and return it with its token (shown only now).

    Raises:
        InvalidInputError: An empty or overlong tenant id or name, or an unknown role.
    """
    if not isinstance(tenant_id, str) or not tenant_id or len(tenant_id) > 255:
        raise InvalidInputError("tenant_id must be 1-255 characters", field="tenant_id")
    if role not in ROLES:
        raise InvalidInputError(
            f"unknown role {role!r}; expected one of: {', '.join(ROLES)}", field="role"
        )
    if name is not None and len(name) > 255:
        raise InvalidInputError("name must be at most 255 characters", field="name")
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        key_id=key_id,
        tenant_id=tenant_id,
        role=role,
        secret_sha256=_digest(secret),
        name=name,
        created_at=as_clock(clock).now(),
    )
    async with session_factory() as session, session.begin():
        session.add(row)
    return CreatedApiKey(ApiKeyInfo.of(row), f"{TOKEN_PREFIX}{key_id}_{secret}")


async def list_api_keys(
    session_factory: async_sessionmaker[AsyncSession], tenant_id: str | None = None
) -> list[ApiKeyInfo]:
    """Keys (of one tenant, or all), oldest first; revoked keys included."""
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.key_id)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    async with session_factory() as session:
        return [ApiKeyInfo.of(row) for row in (await session.execute(query)).scalars()]


async def revoke_api_key(
    session_factory: async_sessionmaker[AsyncSession],
    key_id: str,
    *,
    clock: Clock | None = None,
) -> ApiKeyInfo:
    """Revoke a key: from now on its token is refused. Revoking it again changes nothing.

    Raises:
        InvalidInputError: No key has that id (field ``key_id``).
    """
    async with session_factory() as session, session.begin():
        await session.execute(
            update(ApiKey)
            .where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=as_clock(clock).now())
        )
        row = await session.get(ApiKey, key_id)
        if row is None:
            raise InvalidInputError(f"no API key with id {key_id!r}", field="key_id")
        return ApiKeyInfo.of(row)


async def verify_api_key(
    session_factory: async_sessionmaker[AsyncSession], token: str
) -> ApiKeyInfo | None:
    """The live key ``token`` belongs to, or ``None`` (malformed, unknown, wrong, revoked)."""
    match = _TOKEN.fullmatch(token)
    if match is None:
        return None
    async with session_factory() as session:
        row = await session.get(ApiKey, match["key_id"])
    # A missing key is compared against a dummy digest, so that timing says nothing about
    # which key ids exist.
    expected = row.secret_sha256 if row is not None else "0" * 64
    if not hmac.compare_digest(expected, _digest(match["secret"])):
        return None
    if row is None or row.revoked_at is not None:
        return None
    return ApiKeyInfo.of(row)
