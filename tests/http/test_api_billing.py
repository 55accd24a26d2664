"""``/v1/billing-runs``: 202 with Location at once, progress and report, tenants apart."""

from __future__ import annotations

from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.operations import seed_demo_data
from tests.http.api_support import PROBLEM, running_api
from tests.operations.test_billing_runs import last_month


async def test_start_is_202_with_location_and_the_report_follows_when_the_run_ends(
    session_factory,
):
    clock = ManualClock()
    await seed_demo_data(session_factory, customers=15)
    period = last_month(clock)
    async with running_api(session_factory, clock=clock) as api:
        started = await api.client.post(
            "/v1/billing-runs", json={"billing_period": period}, headers=api.auth(api.operator)
        )
        assert started.status_code == 202, started.text
        location = started.headers["location"]
        assert location == f"/v1/billing-runs/{started.json()['billing_run_id']}"
        await api.settle()
        progress = await api.client.get(location, headers=api.auth(api.operator))
        hidden = await api.client.get(location, headers=api.auth(api.other))
    assert progress.status_code == 200
    body = progress.json()
    assert body["status"] == "completed" and body["finished"] is True
    assert body["report"]["invoices"] == 15 and body["billing_period"] == period
    assert body["partitions"] == {"charged": 1}  # 15 customers fit one partition
    assert hidden.status_code == 404 and hidden.headers["content-type"] == PROBLEM


async def test_start_is_422_when_the_period_is_malformed_or_future(session_factory):
    clock = ManualClock()
    now = clock.now()
    async with running_api(session_factory, clock=clock) as api:
        answers = [
            await api.client.post(
                "/v1/billing-runs", json={"billing_period": period}, headers=api.auth(api.operator)
            )
            for period in ("2026-13", "soon", f"{now.year + 1:04d}-01")
        ]
    assert [answer.status_code for answer in answers] == [422, 422, 422]
    assert all(answer.headers["content-type"] == PROBLEM for answer in answers)


async def test_start_is_409_when_a_retry_has_nothing_to_retry(session_factory):
    clock = ManualClock()
    async with running_api(session_factory, clock=clock) as api:
        response = await api.client.post(
            "/v1/billing-runs",
            json={"billing_period": last_month(clock), "retry": True},
            headers=api.auth(api.operator),
        )
    assert response.status_code == 409 and response.headers["content-type"] == PROBLEM


async def test_read_is_404_when_the_run_does_not_exist(session_factory):
    async with running_api(session_factory) as api:
        response = await api.client.get(
            "/v1/billing-runs/br_nothing", headers=api.auth(api.operator)
        )
    assert response.status_code == 404
