"""The coordinator with every shipped saga registered."""

from __future__ import annotations

from dotmac_shared.business_logic import create_session_factory


def test_shipped_coordinator_registers_every_shipped_saga_when_built(tmp_path):
    from dotmac_shared.business_logic.clock import ManualClock
    from dotmac_shared.business_logic.operations import shipped_coordinator

    factory = create_session_factory(f"sqlite:///{tmp_path / 'x.db'}", migrate=False)
    clock = ManualClock()
    coordinator = shipped_coordinator(factory, lease_seconds=5, clock=clock)
    assert sorted(coordinator.definitions) == [
        "billing_run",
        "service_provisioning",
        "tenant_provisioning",
    ]
    assert coordinator.clock is clock and coordinator.lease_seconds == 5
