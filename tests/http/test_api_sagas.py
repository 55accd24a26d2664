"""``/v1/sagas``: filters, cursor paging, detail with durations, cancel; tenants kept apart."""

from __future__ import annotations

import datetime as dt

from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.sagas import (
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaStep,
)
from tests.http.api_support import OTHER_TENANT, PROBLEM, running_api


def definition(name: str, *, fail: bool = False) -> SagaDefinition:
    async def one(ctx):
        return {"n": 1}

    async def two(ctx):
        if fail:
            raise RuntimeError("step two broke")
        return {"n": 2}

    async def undo(ctx):
        return None

    return SagaDefinition(
        name=name,
        steps=[
            SagaStep(name="one", execute=one, compensate=undo),
            SagaStep(name="two", execute=two),
        ],
    )


async def run_sagas(factory, clock: ManualClock) -> list[str]:
    """Seven sagas of tenant123 one minute apart (two failing), one of another tenant."""
    coordinator = SagaCoordinator(factory, clock=clock)
    coordinator.register_saga(definition("alpha"))
    coordinator.register_saga(definition("beta", fail=True))
    ids = []
    for n in range(7):
        name = "beta" if n in (2, 5) else "alpha"
        saga_id = f"s{n}"
        await coordinator.execute_saga(name, SagaContext(saga_id=saga_id, tenant_id="tenant123"))
        ids.append(saga_id)
        clock.advance(minutes=1)
    await coordinator.execute_saga("alpha", SagaContext(saga_id="x0", tenant_id=OTHER_TENANT))
    return ids


async def test_list_pages_newest_first_through_the_cursor_when_there_are_more(session_factory):
    clock = ManualClock()
    ids = await run_sagas(session_factory, clock)
    async with running_api(session_factory) as api:
        seen, cursor = [], None
        while True:
            params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = (
                await api.client.get("/v1/sagas", params=params, headers=api.auth(api.operator))
            ).json()
            seen += [item["saga_id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert seen == list(reversed(ids))  # the other tenant's saga is never listed


async def test_list_filters_by_name_status_and_time_when_asked(session_factory):
    clock = ManualClock()
    start = clock.now()
    await run_sagas(session_factory, clock)
    async with running_api(session_factory) as api:

        async def ids(**params):
            response = await api.client.get(
                "/v1/sagas", params=params, headers=api.auth(api.operator)
            )
            assert response.status_code == 200, response.text
            return {item["saga_id"] for item in response.json()["items"]}

        assert await ids(name="beta") == {"s2", "s5"}
        assert await ids(status="compensated") == {"s2", "s5"}
        assert await ids(name="alpha", status="completed") == {"s0", "s1", "s3", "s4", "s6"}
        after = (start + dt.timedelta(minutes=4, seconds=30)).isoformat()
        before = (start + dt.timedelta(minutes=1, seconds=30)).isoformat()
        assert await ids(created_after=after) == {"s5", "s6"}
        assert await ids(created_before=before) == {"s0", "s1"}
        bad = await api.client.get(
            "/v1/sagas", params={"status": "asleep"}, headers=api.auth(api.operator)
        )
        cursor = await api.client.get(
            "/v1/sagas", params={"cursor": "garbage!"}, headers=api.auth(api.operator)
        )
    assert bad.status_code == 422 and bad.headers["content-type"] == PROBLEM
    assert cursor.status_code == 422 and cursor.json()["field"] == "cursor"


async def test_detail_shows_steps_attempts_errors_and_durations_when_the_saga_failed(
    session_factory,
):
    clock = ManualClock()
    await run_sagas(session_factory, clock)
    async with running_api(session_factory) as api:
        response = await api.client.get("/v1/sagas/s2", headers=api.auth(api.operator))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "compensated" and body["failed_step"] == "two"
    steps = {step["name"]: step for step in body["steps"]}
    assert steps["two"]["attempts"] >= 1 and "step two broke" in steps["two"]["error"]["message"]
    assert steps["two"]["error"]["code"] and steps["two"]["error"]["step"] == "two"
    assert steps["one"]["status"] == "compensated"
    assert steps["one"]["duration_seconds"] is not None and steps["one"]["duration_seconds"] >= 0


async def test_detail_and_cancel_are_404_when_the_saga_is_another_tenants(session_factory):
    clock = ManualClock()
    await run_sagas(session_factory, clock)
    async with running_api(session_factory) as api:
        read = await api.client.get("/v1/sagas/x0", headers=api.auth(api.admin))
        cancel = await api.client.post("/v1/sagas/x0/cancel", headers=api.auth(api.admin))
        own = await api.client.get("/v1/sagas/x0", headers=api.auth(api.other))
    assert read.status_code == cancel.status_code == 404
    assert read.json()["code"] == "saga_not_found"
    assert own.status_code == 200


async def test_cancel_needs_the_admin_role_and_returns_the_outcome_when_finished(
    session_factory,
):
    clock = ManualClock()
    await run_sagas(session_factory, clock)
    async with running_api(session_factory) as api:
        refused = await api.client.post("/v1/sagas/s0/cancel", headers=api.auth(api.operator))
        done = await api.client.post("/v1/sagas/s0/cancel", headers=api.auth(api.admin))
    assert refused.status_code == 403
    assert done.status_code == 200 and done.json()["status"] == "completed"


async def test_cancel_compensates_a_saga_whose_worker_died_when_an_admin_asks(
    session_factory, database_url
):
    from tests.cli.helpers import abandon_service_sagas

    async with running_api(session_factory) as api:
        [saga_id] = await abandon_service_sagas(database_url)
        before = await api.client.get(f"/v1/sagas/{saga_id}", headers=api.auth(api.admin))
        cancelled = await api.client.post(
            f"/v1/sagas/{saga_id}/cancel", headers=api.auth(api.admin)
        )
    assert before.json()["status"] == "running"
    assert cancelled.status_code == 200, cancelled.text
    body = cancelled.json()
    assert body["status"] == "compensated"
    assert "allocate_resources" in body["compensated_steps"]


class _BrokenNotifier:
    async def notify(self, session, **kwargs):
        raise ConnectionError("mail relay down")

    async def notify_many(self, session, messages):
        raise ConnectionError("mail relay down")


async def _incident(session_factory) -> str:
    """A service provisioning saga of tenant123 stopped past activation (notify kept failing)."""
    from dotmac_shared.business_logic.operations import ServiceProvisioningSaga
    from tests.cli.helpers import SERVICE_REQUEST

    coordinator = SagaCoordinator(session_factory)
    coordinator.register_saga(ServiceProvisioningSaga.create_definition(notifier=_BrokenNotifier()))
    outcome = await coordinator.execute_saga(
        ServiceProvisioningSaga.name,
        SagaContext(saga_id="svc-incident", tenant_id="tenant123"),
        {**SERVICE_REQUEST, "plan": "standard"},
    )
    assert outcome.status == "incident"
    return "svc-incident"


async def test_retry_step_action_completes_an_incident_and_records_the_principal(
    session_factory,
):
    async with running_api(session_factory) as api:
        saga_id = await _incident(session_factory)
        denied = await api.client.post(
            f"/v1/sagas/{saga_id}/actions/retry-step",
            json={"reason": "relay back"},
            headers=api.auth(api.operator),
        )
        done = await api.client.post(
            f"/v1/sagas/{saga_id}/actions/retry-step",
            json={"reason": "relay back"},
            headers=api.auth(api.admin),
        )
        history = await api.client.get(
            f"/v1/sagas/{saga_id}/history", headers=api.auth(api.operator)
        )
    assert denied.status_code == 403
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["status"] == "completed"
    (action,) = [e for e in body["history"] if e["kind"] == "action.retry_step"]
    assert action["reason"] == "relay back" and action["operator"].startswith("apikey:")
    assert [e["kind"] for e in history.json()] == [e["kind"] for e in body["history"]]


async def test_repair_actions_answer_409_problem_when_they_do_not_apply(session_factory):
    clock = ManualClock()
    await run_sagas(session_factory, clock)
    async with running_api(session_factory) as api:
        refused = await api.client.post(
            "/v1/sagas/s0/actions/mark-compensated",
            json={"reason": "undone by hand", "step": "one"},
            headers=api.auth(api.admin),
        )
        saga_id = await _incident(session_factory)
        cancel = await api.client.post(
            f"/v1/sagas/{saga_id}/actions/cancel", json={}, headers=api.auth(api.admin)
        )
        blank = await api.client.post(
            f"/v1/sagas/{saga_id}/actions/resolve", json={"reason": ""}, headers=api.auth(api.admin)
        )
    assert refused.status_code == 409
    assert refused.headers["content-type"].startswith(PROBLEM)
    problem = refused.json()
    assert problem["code"] == "saga_repair_refused"
    assert problem["metadata"]["action"] == "mark_step_compensated"
    assert problem["metadata"]["status"] == "completed"
    assert cancel.status_code == 409 and cancel.json()["metadata"]["reason"] == "past_pivot"
    assert blank.status_code == 422
