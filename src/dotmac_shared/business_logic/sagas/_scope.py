"""Which tenant's sagas a read or an operator action may see: one tenant, none, or all.

Every query of the saga store and every operator action of the coordinator takes a scope,
so that no code path can reach another tenant's saga by forgetting a filter:

- a tenant id (``"tenant123"``): that tenant's sagas only;
- ``None``: the sagas started without a tenant (``SagaContext(tenant_id=None)``) only;
- :data:`ALL_TENANTS`: every saga, whatever its tenant; the explicit operator option (the
  recovery worker, ``dotmac-bl saga list --all-tenants``).

Example:
    >>> from dotmac_shared.business_logic.sagas import ALL_TENANTS
    >>> await coordinator.list_sagas(tenant_id=ALL_TENANTS)  # doctest: +SKIP
"""

from __future__ import annotations

import enum
from typing import Final, TypeAlias

from dotmac_shared.business_logic.exceptions import InvalidInputError

__all__ = ["ALL_TENANTS", "AllTenants", "TenantScope", "tenant_scope"]


class AllTenants(enum.Enum):
    """The type of :data:`ALL_TENANTS` (an enum of one member, so type checkers can narrow it).

    Distinct from ``None``, which means "the sagas started without a tenant".
    """

    ALL_TENANTS = "all_tenants"  # every tenant's sagas: an operator's view, never a default

    def __repr__(self) -> str:
        return "ALL_TENANTS"


#: Every tenant's sagas (see the module docstring).
ALL_TENANTS: Final = AllTenants.ALL_TENANTS

#: A tenant id, ``None`` (sagas without a tenant) or :data:`ALL_TENANTS`.
TenantScope: TypeAlias = str | None | AllTenants


def tenant_scope(value: object, field: str = "tenant_id") -> TenantScope:
    """Return ``value`` if it is a valid scope, else raise a clear error.

    Raises:
        InvalidInputError: ``value`` is neither a string, ``None`` nor :data:`ALL_TENANTS`.
    """
    if value is None or isinstance(value, str | AllTenants):
        return value
    raise InvalidInputError(
        f"{field} must be a tenant id (str), None (sagas without a tenant) or ALL_TENANTS, "
        f"got {type(value).__name__}",
        field=field,
    )
