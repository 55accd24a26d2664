"""Who is using the console: an API key's principal, and what it may see and do.

Signing in takes an API key from ``dotmac-bl apikey create`` (the same store the ``/v1`` API
checks, :func:`~dotmac_shared.business_logic.http.verify_api_key`); the session keeps only the
key's id, and every request reads the key again, so that revoking it ends its sessions at
once. A ``platform`` key is a platform operator: it sees every tenant's sagas and billing runs
(:data:`~dotmac_shared.business_logic.sagas.ALL_TENANTS`); any other key sees its own
tenant's only, and another tenant's saga is "not found", exactly like a missing one.
"""

from __future__ import annotations

import dataclasses
from typing import Final

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.exceptions import PermissionDeniedError
from dotmac_shared.business_logic.http._api_keys import ApiKeyInfo
from dotmac_shared.business_logic.http._auth import Principal
from dotmac_shared.business_logic.http._models import ApiKey
from dotmac_shared.business_logic.sagas import ALL_TENANTS, TenantScope

__all__ = ["ConsoleUser", "load_user"]

#: Longest operator name a saga's history records.
_MAX_OPERATOR_CHARS: Final = 255


@dataclasses.dataclass(frozen=True, slots=True)
class ConsoleUser:
    """The signed-in user of one request.

    Attributes:
        principal: The key's principal (tenant, ``apikey:<id>``, roles), as the API sees it.
        key_id: The key's id.
        key_name: The key's label, if it has one.
    """

    principal: Principal
    key_id: str
    key_name: str | None = None

    @classmethod
    def of(cls, key: ApiKeyInfo) -> ConsoleUser:
        """The user a live key signs in."""
        principal = Principal(
            tenant_id=key.tenant_id, user_id=f"apikey:{key.key_id}", roles=key.roles
        )
        return cls(principal=principal, key_id=key.key_id, key_name=key.name)

    @property
    def is_platform(self) -> bool:
        """A platform operator: every tenant's data."""
        return "platform" in self.principal.roles

    @property
    def can_act(self) -> bool:
        """Whether the user may take repair actions and cancel sagas (``admin`` or above)."""
        return "admin" in self.principal.roles

    @property
    def operator(self) -> str:
        """The name recorded on what the user does (``apikey:<id>``, with the key's label).

        At most 255 characters (what a saga's history records): a long label is cut.
        """
        base = self.principal.user_id or f"apikey:{self.key_id}"
        if not self.key_name:
            return base
        room = _MAX_OPERATOR_CHARS - len(base) - 3
        label = self.key_name if len(self.key_name) <= room else self.key_name[: room - 1] + "…"
        return f"{base} ({label})"

    def scope(self, tenant_filter: str | None = None) -> TenantScope:
        """The tenants a read covers: the user's own, or (platform) all or the one asked."""
        if not self.is_platform:
            return self.principal.tenant_id
        return tenant_filter if tenant_filter else ALL_TENANTS

    def require_action_role(self) -> None:
        """Refuse a repair action or cancel to a user without the ``admin`` role.

        Raises:
            PermissionDeniedError: The user's key is an ``operator`` key.
        """
        if not self.can_act:
            raise PermissionDeniedError(
                "this action needs an admin API key",
                required_role="admin",
                tenant_id=self.principal.tenant_id,
                user_id=self.principal.user_id,
            )


async def load_user(
    session_factory: async_sessionmaker[AsyncSession], key_id: str
) -> ConsoleUser | None:
    """The user of a session's key, or ``None`` if the key is gone or revoked."""
    async with session_factory() as session:
        row = await session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return None
    return ConsoleUser.of(ApiKeyInfo.of(row))
