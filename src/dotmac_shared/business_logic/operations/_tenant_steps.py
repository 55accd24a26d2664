"""The work of tenant provisioning: validation, then one method per saga step.

Each tenant gets its own tables: on PostgreSQL a schema ``tenant_<id>`` holding ``users``
and ``audit_log``; on SQLite (no schemas) the same tables in the main file, named
``tenant_<id>__users`` and ``tenant_<id>__audit_log``. Every step has a compensation, so a
failure anywhere leaves no tenant, schema, tables or settings behind.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, delete, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from dotmac_shared.business_logic.exceptions import InvalidInputError, ProvisioningRefusedError
from dotmac_shared.business_logic.operations._catalog import DEFAULT_TAX_RATE
from dotmac_shared.business_logic.operations.models import Tenant, TenantSetting
from dotmac_shared.business_logic.persistence._sql import insert_for
from dotmac_shared.business_logic.persistence._types import utcnow

# The policies' own modules, not the package: policies/commissions.py imports this package's
# models, so this module may be imported while the policies package is still initializing.
from dotmac_shared.business_logic.policies import LicensingEngine

__all__ = ["TenantProvisioningSteps", "TenantRequest", "tenant_id_for", "validate_tenant_request"]

_DOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_EMAIL = re.compile(
    r"^[^@\s\x00-\x1f\x7f-\x9f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9-]{1,63})+\Z"
)


@functools.cache
def licensing() -> LicensingEngine:
    """The shipped licensing policies, loaded once: tenant plans and their default limits."""
    return LicensingEngine()


def tenant_id_for(saga_id: str) -> str:
    """The id of the tenant a provisioning saga creates: the same on every retry."""
    return "ten_" + hashlib.sha256(saga_id.encode()).hexdigest()[:20]


@dataclasses.dataclass(frozen=True, slots=True)
class TenantRequest:
    """A validated tenant provisioning request."""

    name: str
    domain: str
    plan: str
    admin_email: str


def validate_tenant_request(data: Mapping[str, Any]) -> TenantRequest:
    """Check name, domain format, plan and admin email; the first problem raises.

    Raises:
        InvalidInputError: Naming the field and what is wrong with it.
    """
    if not isinstance(data, Mapping):
        raise InvalidInputError("operation_data must be a mapping", field="operation_data")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise InvalidInputError(
            "name must be a non-empty string of at most 255 characters", field="name"
        )
    domain = data.get("domain")
    if not isinstance(domain, str) or not _DOMAIN.match(domain):
        raise InvalidInputError(
            f"domain {domain!r} must be 1-63 lowercase letters, digits or inner hyphens",
            field="domain",
        )
    plan = data.get("plan")
    plans = tuple(licensing().tiers())
    if plan not in plans:
        raise InvalidInputError(
            f"unknown tenant plan {plan!r}; expected one of: {', '.join(plans)}",
            field="plan",
        )
    email = data.get("admin_email")
    if not isinstance(email, str) or not _EMAIL.match(email):
        raise InvalidInputError(
            f"admin_email {email!r} is not a valid address", field="admin_email"
        )
    return TenantRequest(name.strip(), domain, str(plan), email)


def _tenant_tables(dialect: str, tenant_id: str) -> tuple[MetaData, str | None]:
    """The tenant's own tables: in schema ``tenant_<id>`` on PostgreSQL, prefixed on SQLite."""
    metadata = MetaData()
    schema = tenant_id if dialect == "postgresql" else None
    prefix = "" if schema else f"{tenant_id}__"
    Table(
        f"{prefix}users",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("email", String(320), nullable=False, unique=True),
        Column("role", String(32), nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False),
        schema=schema,
    )
    Table(
        f"{prefix}audit_log",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("at", DateTime(timezone=True), nullable=False),
        Column("actor", String(320), nullable=False),
        Column("action", String(255), nullable=False),
        schema=schema,
    )
    return metadata, schema


@dataclasses.dataclass
class TenantProvisioningSteps:
    """What each tenant-provisioning step does."""

    session_factory: async_sessionmaker[AsyncSession]
    now: Callable[[], dt.datetime] = utcnow

    async def create_tenant(self, tenant_id: str, request: TenantRequest) -> dict[str, Any]:
        """Insert the tenant (status ``provisioning``); a taken domain is refused."""
        try:
            async with self.session_factory() as session, session.begin():
                await session.execute(
                    insert_for(session, Tenant)
                    .values(
                        id=tenant_id,
                        name=request.name,
                        domain=request.domain,
                        plan=request.plan,
                        admin_email=request.admin_email,
                        status="provisioning",
                    )
                    .on_conflict_do_nothing(index_elements=["id"])
                )
        except IntegrityError as exc:  # the unique domain: another tenant owns it
            raise ProvisioningRefusedError(
                f"domain {request.domain!r} is already taken",
                operation="tenant_provisioning",
                resource_type="tenant",
                metadata={"field": "domain"},
            ) from exc
        return {"tenant_id": tenant_id, "domain": request.domain, "status": "provisioning"}

    async def delete_tenant(self, tenant_id: str) -> None:
        """Compensation: remove the tenant (its settings go with it)."""
        async with self.session_factory() as session, session.begin():
            await session.execute(delete(TenantSetting).where(TenantSetting.tenant_id == tenant_id))
            await session.execute(delete(Tenant).where(Tenant.id == tenant_id))

    async def configure_database(self, tenant_id: str, admin_email: str) -> dict[str, Any]:
        """Create the tenant's schema (PostgreSQL) or prefixed tables (SQLite), and its admin."""
        async with self.session_factory() as session, session.begin():
            dialect = session.get_bind().dialect.name
            metadata, schema = _tenant_tables(dialect, tenant_id)
            if schema is not None:
                await session.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
            await session.run_sync(lambda s: metadata.create_all(s.connection()))
            users = next(t for t in metadata.tables.values() if t.name.endswith("users"))
            await session.execute(
                insert_for(session, users)
                .values(email=admin_email, role="admin", created_at=self.now())
                .on_conflict_do_nothing(index_elements=["email"])
            )
            await session.execute(
                update(Tenant).where(Tenant.id == tenant_id).values(schema_name=schema)
            )
            tables = sorted(t.fullname for t in metadata.tables.values())
        return {"schema": schema, "tables": tables}

    async def drop_database(self, tenant_id: str) -> None:
        """Compensation: drop the tenant's tables (and schema on PostgreSQL)."""
        async with self.session_factory() as session, session.begin():
            metadata, schema = _tenant_tables(session.get_bind().dialect.name, tenant_id)
            if schema is not None:
                await session.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            else:
                await session.run_sync(_drop_all(metadata))

    async def setup_defaults(
        self, tenant_id: str, plan: str, limits: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Write the plan's limits and the default tax rate as the tenant's settings."""
        settings = {**limits, "tax_rate": str(DEFAULT_TAX_RATE), "plan": plan}
        async with self.session_factory() as session, session.begin():
            await session.execute(
                insert_for(session, TenantSetting).on_conflict_do_nothing(
                    index_elements=["tenant_id", "key"]
                ),
                [{"tenant_id": tenant_id, "key": k, "value": v} for k, v in settings.items()],
            )
        return {"settings": settings}

    async def remove_defaults(self, tenant_id: str) -> None:
        """Compensation: delete the tenant's settings."""
        async with self.session_factory() as session, session.begin():
            await session.execute(delete(TenantSetting).where(TenantSetting.tenant_id == tenant_id))

    async def activate_tenant(self, tenant_id: str) -> dict[str, Any]:
        """Make the tenant available."""
        activated_at = self.now()
        async with self.session_factory() as session, session.begin():
            await session.execute(
                update(Tenant)
                .where(Tenant.id == tenant_id)
                .values(status="active", activated_at=activated_at)
            )
        return {
            "tenant_id": tenant_id,
            "status": "active",
            "activated_at": activated_at.isoformat(),
        }

    async def deactivate_tenant(self, tenant_id: str) -> None:
        """Compensation: back to ``provisioning`` so nobody uses a half-removed tenant."""
        async with self.session_factory() as session, session.begin():
            await session.execute(
                update(Tenant)
                .where(Tenant.id == tenant_id)
                .values(status="provisioning", activated_at=None)
            )


def _drop_all(metadata: MetaData) -> Callable[[Session], None]:
    def drop(session: Session) -> None:
        metadata.drop_all(session.connection())

    return drop
