"""The repair actions of the saga page, each behind its confirmation, recorded in the history.

Mark a step compensated by hand, retry a step after an incident, resolve an incident with
the step's output, cancel a running saga, and a refusal (409, nothing changed) when an
action no longer applies; on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio

from dotmac_shared.business_logic.sagas import SagaContext, SagaDefinition, SagaStep, StepContext
from tests.console.support import (
    INCIDENT_SAGA,
    SAGA_NAME,
    TENANT,
    HealingStep,
    incident_definition,
    release_nothing,
    reserve,
    run_saga,
)


async def test_a_step_is_marked_compensated_by_hand_when_a_person_undid_it_outside(setup):
    coordinator = setup.app.state.dotmac.coordinator
    assert await run_saga(coordinator, SAGA_NAME, "port-3", TENANT) == "compensation_failed"
    console = await setup.signed_in(setup.keys.admin)
    page = await console.get("/sagas/port-3")
    assert "Mark compensated: reserve_port" in page.text
    confirm = await console.get("/sagas/port-3/actions/mark-compensated", step="reserve_port")
    assert "Mark this step compensated by hand?" in confirm.text
    done = await console.post(
        "/sagas/port-3/actions/mark-compensated",
        {"step": "reserve_port", "reason": "released the port on the switch by hand"},
    )
    assert done.status_code == 303
    saga = await coordinator.get_saga("port-3", tenant_id=TENANT)
    assert str(saga["status"]) == "compensated"
    assert setup.release.calls == 1  # the compensation itself did not run again
    action = [e for e in saga.history if e.kind == "action.mark_step_compensated"]
    assert len(action) == 1 and action[0].reason == "released the port on the switch by hand"
    assert action[0].operator is not None and action[0].operator.endswith("(ops)")
    history = (await console.get("/sagas/port-3")).text
    assert "action.mark_step_compensated" in history
    assert "released the port on the switch by hand" in history


async def test_an_incident_is_retried_or_resolved_then_the_saga_completes(setup):
    mail = HealingStep(failures=1)
    coordinator = setup.app.state.dotmac.coordinator
    coordinator.register_saga(incident_definition(mail))
    assert await run_saga(coordinator, INCIDENT_SAGA, "act-1", TENANT) == "incident"
    console = await setup.signed_in(setup.keys.admin)
    page = await console.get("/sagas/act-1")
    assert "Retry step" in page.text and "Resolve incident" in page.text
    assert "Retry compensation" not in page.text and ">retriable<" in page.text
    retried = await console.post("/sagas/act-1/actions/retry-step", {"reason": "relay is back"})
    assert retried.status_code == 303
    assert str((await coordinator.get_saga("act-1", tenant_id=TENANT))["status"]) == "completed"
    assert mail.calls == 2

    mail.failures = 3  # the next saga's mail fails again (call 3)
    assert await run_saga(coordinator, INCIDENT_SAGA, "act-2", TENANT) == "incident"
    bad = await console.post(
        "/sagas/act-2/actions/resolve-incident", {"reason": "sent by hand", "output": "{oops"}
    )
    assert bad.status_code == 400 and "output is not valid JSON" in bad.text
    resolved = await console.post(
        "/sagas/act-2/actions/resolve-incident",
        {"reason": "sent by hand", "output": '{"mailed": "by hand"}'},
    )
    assert resolved.status_code == 303
    saga = await coordinator.get_saga("act-2", tenant_id=TENANT)
    assert str(saga["status"]) == "completed"
    assert dict(saga["step_results"]["send_welcome"]) == {"mailed": "by hand"}
    assert mail.calls == 3


async def test_an_action_is_refused_and_changes_nothing_when_it_no_longer_applies(setup):
    coordinator = setup.app.state.dotmac.coordinator
    assert await run_saga(coordinator, "welcome_mail", "mail-1", TENANT) == "completed"
    before = await coordinator.get_saga("mail-1", tenant_id=TENANT)
    console = await setup.signed_in(setup.keys.admin)
    refused = await console.post(
        "/sagas/mail-1/actions/retry-compensation", {"reason": "someone else was faster"}
    )
    assert refused.status_code == 409
    assert "Retry the failed compensation?" in refused.text and 'role="alert"' in refused.text
    after = await coordinator.get_saga("mail-1", tenant_id=TENANT)
    assert str(after["status"]) == "completed" and len(after.history) == len(before.history)
    unknown = await console.post("/sagas/mail-1/actions/undo-everything", {"reason": "x"})
    assert unknown.status_code == 404


async def test_a_running_saga_is_cancelled_and_compensates_when_an_admin_confirms(setup):
    gate = asyncio.Event()

    async def wait_for_gate(ctx: StepContext) -> dict:
        await gate.wait()  # the step runs until the test lets it finish
        return {"provisioned": True}

    coordinator = setup.app.state.dotmac.coordinator
    coordinator.register_saga(
        SagaDefinition(
            name="slow_setup",
            steps=[
                SagaStep(name="provision", execute=wait_for_gate, compensate=release_nothing),
                SagaStep(name="notify", execute=reserve, compensate=release_nothing),
            ],
        )
    )
    await coordinator.start_saga("slow_setup", SagaContext(saga_id="slow-1", tenant_id=TENANT))
    console = await setup.signed_in(setup.keys.admin)
    page = await console.get("/sagas/slow-1")
    assert "running" in page.text and "Cancel saga" in page.text
    done = await console.post("/sagas/slow-1/actions/cancel", {"reason": "customer withdrew"})
    assert done.status_code == 303
    gate.set()  # the step ends; at its boundary the worker sees the cancel and compensates
    outcome = await coordinator.wait("slow-1", tenant_id=TENANT)
    assert str(outcome["status"]) == "compensated"
    saga = await coordinator.get_saga("slow-1", tenant_id=TENANT)
    cancel = [e for e in saga.history if e.kind == "action.cancel"]
    assert len(cancel) == 1 and cancel[0].reason == "customer withdrew"
