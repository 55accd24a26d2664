"""A saga coordinator with every shipped saga registered: what a worker or an API needs."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.clock import Clock
from dotmac_shared.business_logic.operations._billing_run import BillingRunSaga
from dotmac_shared.business_logic.operations._service_provisioning import ServiceProvisioningSaga
from dotmac_shared.business_logic.operations._tenant_provisioning import TenantProvisioningSaga
from dotmac_shared.business_logic.sagas import SagaCoordinator

__all__ = ["shipped_coordinator"]


def shipped_coordinator(
    session_factory: async_sessionmaker[AsyncSession],
    *,
    lease_seconds: float = 30.0,
    clock: Clock | None = None,
) -> SagaCoordinator:
    """A coordinator with the three shipped sagas registered.

    ``tenant_provisioning``, ``service_provisioning`` and ``billing_run`` with their
    default collaborators, so that any of them can be started, resumed, cancelled or
    recovered (``SagaWorker(shipped_coordinator(factory)).run()``).

    Example:
        >>> coordinator = shipped_coordinator(session_factory)  # doctest: +SKIP
        >>> sorted(coordinator.definitions)  # doctest: +SKIP
        ['billing_run', 'service_provisioning', 'tenant_provisioning']
    """
    coordinator = SagaCoordinator(session_factory, lease_seconds=lease_seconds, clock=clock)
    coordinator.register_saga(TenantProvisioningSaga.create_definition())
    coordinator.register_saga(ServiceProvisioningSaga.create_definition())
    coordinator.register_saga(
        BillingRunSaga.create_definition(partition_lease_seconds=lease_seconds, clock=clock)
    )
    return coordinator
