"""The work of service provisioning, one method per saga step, each with its compensation.

Steps are at-least-once: every method is safe to run again for the same saga. The service
id is derived from the saga id, rows are inserted with ``ON CONFLICT DO NOTHING``, the
address allocation is idempotent per service, and the notice carries a dedupe key.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.exceptions import (
    InvalidInputError,
    ProvisioningError,
    ProvisioningRefusedError,
)
from dotmac_shared.business_logic.operations._catalog import (
    BILLING_CYCLES,
    PLAN_LEVELS,
    SERVICE_TYPES,
)
from dotmac_shared.business_logic.operations._ports import NetworkProvisioner, Notifier
from dotmac_shared.business_logic.operations._resources import allocate_resource, release_resources
from dotmac_shared.business_logic.operations.models import (
    BillingAccount,
    Customer,
    Service,
    ServicePlan,
)
from dotmac_shared.business_logic.persistence._sql import insert_for
from dotmac_shared.business_logic.persistence._types import utcnow

__all__ = ["EligibilityCheck", "ServiceProvisioningSteps", "service_id_for"]

#: ``(plan_type, customer_data, tenant_id, user_id) -> {"eligible": bool, "reasons": [...], ...}``
EligibilityCheck = Callable[[str, Mapping[str, Any], str, str | None], Mapping[str, Any]]

#: Request fields a plan's eligibility policy reads from the request, not the customer.
_REQUEST_FIELDS = ("contract_term_months", "support_tier")
#: Service types that take an address from the tenant's IPv4 pool.
_NEEDS_ADDRESS = frozenset({"internet", "voip"})


def service_id_for(saga_id: str) -> str:
    """The id of the service a provisioning saga creates: the same on every retry."""
    return "svc_" + hashlib.sha256(saga_id.encode()).hexdigest()[:24]


def _require(data: Mapping[str, Any], field: str, allowed: tuple[str, ...] | None = None) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value:
        raise InvalidInputError(f"{field} is required and must be a non-empty string", field=field)
    if allowed is not None and value not in allowed:
        raise InvalidInputError(
            f"unknown {field} {value!r}; expected one of: {', '.join(allowed)}", field=field
        )
    return value


@dataclasses.dataclass
class ServiceProvisioningSteps:
    """What each service-provisioning step does, given its collaborators."""

    session_factory: async_sessionmaker[AsyncSession]
    provisioner: NetworkProvisioner
    notifier: Notifier
    eligibility: EligibilityCheck
    now: Callable[[], dt.datetime] = utcnow

    # --- 1. validate request -----------------------------------------------------------

    async def validate_request(
        self, tenant_id: str, user_id: str | None, data: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Check the customer, the plan, the billing cycle and the customer's eligibility."""
        customer_id = _require(data, "customer_id")
        service_type = _require(data, "service_type", SERVICE_TYPES)
        level = _require(data, "plan", PLAN_LEVELS)
        cycle_field = "billing_cycle" if "billing_cycle" in data else "billing_period"
        cycle = _require(data, cycle_field, tuple(BILLING_CYCLES))
        async with self.session_factory() as session:
            customer = await session.get(Customer, customer_id)
            if customer is None or customer.tenant_id != tenant_id:
                raise InvalidInputError(
                    f"customer {customer_id!r} does not exist in tenant {tenant_id!r}",
                    field="customer_id",
                    tenant_id=tenant_id,
                )
            plan = (
                await session.execute(
                    select(ServicePlan).where(
                        ServicePlan.tenant_id == tenant_id,
                        ServicePlan.service_type == service_type,
                        ServicePlan.code == level,
                    )
                )
            ).scalar_one_or_none()
            if plan is None:
                raise InvalidInputError(
                    f"tenant {tenant_id!r} sells no {service_type} plan {level!r}", field="plan"
                )
            profile = dict(customer.profile)
        profile.update({k: data[k] for k in _REQUEST_FIELDS if k in data})
        verdict = self.eligibility(plan.eligibility_plan, profile, tenant_id, user_id)
        if not verdict.get("eligible"):
            reasons = list(verdict.get("reasons", []))
            raise ProvisioningRefusedError(
                f"customer {customer_id} is not eligible for {service_type} {level}: "
                + ("; ".join(reasons) or str(verdict.get("decision", "denied"))),
                operation="service_provisioning",
                resource_type="customer",
                resource_id=customer_id,
                tenant_id=tenant_id,
                user_id=user_id,
                metadata={"reasons": reasons, "eligibility_plan": plan.eligibility_plan},
            )
        return {
            "customer_id": customer_id,
            "plan_id": plan.id,
            "service_type": service_type,
            "plan": level,
            "billing_cycle": cycle,
            "monthly_price": str(plan.monthly_price),
            "bandwidth_mbps": plan.bandwidth_mbps,
            "eligibility_policy": plan.eligibility_plan,
            "policy_version": verdict.get("policy_version"),
        }

    # --- 2. allocate resources ---------------------------------------------------------

    async def allocate_resources(
        self, saga_id: str, tenant_id: str, request: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Create the pending service and give it an address if its type needs one."""
        service_id = service_id_for(saga_id)
        async with self.session_factory() as session, session.begin():
            await session.execute(
                insert_for(session, Service)
                .values(
                    id=service_id,
                    tenant_id=tenant_id,
                    customer_id=request["customer_id"],
                    plan_id=request["plan_id"],
                    service_type=request["service_type"],
                    billing_cycle=request["billing_cycle"],
                    monthly_price=Decimal(request["monthly_price"]),
                    status="pending",
                    configuration={},
                    saga_id=saga_id,
                )
                .on_conflict_do_nothing(index_elements=["id"])
            )
            address = None
            if request["service_type"] in _NEEDS_ADDRESS:
                address = await allocate_resource(
                    session,
                    tenant_id=tenant_id,
                    resource_type="ipv4",
                    service_id=service_id,
                    saga_id=saga_id,
                )
        return {"service_id": service_id, "ip_address": address}

    async def release_resources(self, saga_id: str) -> None:
        """Compensation: free the service's resources and remove the pending service."""
        service_id = service_id_for(saga_id)
        async with self.session_factory() as session, session.begin():
            await release_resources(session, service_id=service_id)
            await session.execute(delete(Service).where(Service.id == service_id))

    # --- 3. configure service ----------------------------------------------------------

    async def configure_service(
        self, saga_id: str, tenant_id: str, request: Mapping[str, Any], ip_address: str | None
    ) -> dict[str, Any]:
        """Apply the network configuration and record the billing configuration."""
        service_id = service_id_for(saga_id)
        network = {
            "service_type": request["service_type"],
            "ip_address": ip_address,
            "bandwidth_mbps": request["bandwidth_mbps"],
            "vlan": 100 + int(service_id[4:10], 16) % 3900,
        }
        billing = {
            "billing_cycle": request["billing_cycle"],
            "monthly_price": request["monthly_price"],
        }
        async with self.session_factory() as session, session.begin():
            applied = await self.provisioner.configure(
                session, tenant_id=tenant_id, service_id=service_id, configuration=network
            )
            await session.execute(
                update(Service)
                .where(Service.id == service_id)
                .values(configuration={"network": applied, "billing": billing}, status="configured")
            )
        return {"network": applied, "billing": billing}

    async def deconfigure_service(self, saga_id: str) -> None:
        """Compensation: remove the network configuration; the service is pending again."""
        service_id = service_id_for(saga_id)
        async with self.session_factory() as session, session.begin():
            await self.provisioner.deconfigure(session, service_id=service_id)
            await session.execute(
                update(Service)
                .where(Service.id == service_id)
                .values(configuration={}, status="pending")
            )

    # --- 4. activate service -----------------------------------------------------------

    async def activate_service(
        self, saga_id: str, tenant_id: str, customer_id: str
    ) -> dict[str, Any]:
        """Activate the service and make sure the customer has a billing account."""
        service_id = service_id_for(saga_id)
        activated_at = self.now()
        async with self.session_factory() as session, session.begin():
            customer = await session.get(Customer, customer_id)
            token = customer.payment_method_token if customer is not None else None
            created = await session.execute(
                insert_for(session, BillingAccount)
                .values(
                    id=f"ba_{customer_id}",
                    tenant_id=tenant_id,
                    customer_id=customer_id,
                    currency="USD",
                    payment_method_token=token,
                )
                .on_conflict_do_nothing(index_elements=["customer_id"])
                .returning(BillingAccount.id)
            )
            account_created = created.first() is not None
            await session.execute(
                update(Service)
                .where(Service.id == service_id)
                .values(status="active", started_at=activated_at)
            )
            account_id = (
                await session.execute(
                    select(BillingAccount.id).where(BillingAccount.customer_id == customer_id)
                )
            ).scalar_one()
        return {
            "service_id": service_id,
            "status": "active",
            "billing_account_id": account_id,
            "billing_account_created": account_created,
            "activated_at": activated_at.isoformat(),
        }

    async def deactivate_service(self, saga_id: str, remove_billing_account: bool) -> None:
        """Compensation: the service is configured-not-active again; a new account goes."""
        service_id = service_id_for(saga_id)
        async with self.session_factory() as session, session.begin():
            service = await session.get(Service, service_id)
            if service is None:
                return
            service.status, service.started_at = "configured", None
            if remove_billing_account:
                await session.execute(
                    delete(BillingAccount).where(BillingAccount.customer_id == service.customer_id)
                )

    # --- 5. notify customer ------------------------------------------------------------

    async def notify_customer(
        self, saga_id: str, tenant_id: str, customer_id: str
    ) -> dict[str, Any]:
        """Queue the activation confirmation (once per saga, whatever the retries)."""
        service_id = service_id_for(saga_id)
        async with self.session_factory() as session, session.begin():
            customer = await session.get(Customer, customer_id)
            if customer is None:
                raise ProvisioningError(f"customer {customer_id} vanished", tenant_id=tenant_id)
            queued = await self.notifier.notify(
                session,
                tenant_id=tenant_id,
                recipient=customer.email,
                template="service_activated",
                payload={"service_id": service_id, "customer_id": customer_id},
                dedupe_key=f"{saga_id}:service_activated",
            )
        return {"notification_queued": queued, "recipient": customer.email}
