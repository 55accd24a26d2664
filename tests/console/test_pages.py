"""The console's pages through httpx (in process), on SQLite and PostgreSQL.

Sign-in, CSRF, filters and paging, tenant isolation, a repair action behind its
confirmation, a billing run's progress and report, and a policy's versions, diff and
evaluation.
"""

from __future__ import annotations

import datetime as dt

import httpx

from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.http import revoke_api_key
from dotmac_shared.business_logic.sagas import SagaCoordinator
from tests.console.support import (
    OTHER_TENANT,
    SAGA_NAME,
    TENANT,
    ConsoleClient,
    HealingCompensation,
    failing_definition,
    passing_definition,
    run_saga,
)


async def test_sign_in_starts_a_session_when_the_api_key_is_valid(setup):
    async with setup.client() as client:
        console = ConsoleClient(client)
        anonymous = await console.get("/sagas")
        assert anonymous.status_code == 303
        assert anonymous.headers["location"] == "/console/login?next=%2Fconsole%2Fsagas"
        await console.get("/login")
        wrong = await console.post("/login", {"api_key": "dmk_0000000000000000_" + "x" * 43})
        assert wrong.status_code == 401
        assert "not valid" in wrong.text
        signed = await console.post(
            "/login", {"api_key": setup.keys.admin, "next": "/console/policies"}
        )
        assert (signed.status_code, signed.headers["location"]) == (303, "/console/policies")
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/console" in cookie
        page = await console.get("/sagas")
        assert page.status_code == 200
        assert "Tenant tenant123" in page.text
        assert page.headers["x-frame-options"] == "DENY"
        # A redirect target off the console is never followed.
        await console.post("/logout", {})
        await console.get("/login")
        away = await console.post("/login", {"api_key": setup.keys.admin, "next": "//evil.test"})
        assert away.headers["location"] == "/console/sagas"


async def test_a_session_ends_when_its_api_key_is_revoked(setup, session_factory):
    console = await setup.signed_in(setup.keys.operator)
    assert (await console.get("/sagas")).status_code == 200
    key_id = setup.keys.operator.split("_")[1]
    await revoke_api_key(session_factory, key_id)
    assert (await console.get("/sagas")).status_code == 303


async def test_a_post_is_refused_and_changes_nothing_when_its_csrf_token_is_missing_or_wrong(
    setup, session_factory
):
    saga_id = "saga-csrf"
    assert (
        await run_saga(setup.app.state.dotmac.coordinator, SAGA_NAME, saga_id, TENANT)
        == "compensation_failed"
    )
    console = await setup.signed_in(setup.keys.admin)
    action = f"/sagas/{saga_id}/actions/retry-compensation"
    for form in ({"reason": "port service is back"}, {"reason": "x", "csrf_token": "forged"}):
        refused = await console.post(action, form, csrf=False)
        assert refused.status_code == 403
        assert "security token" in refused.text
        started = await console.post("/billing", {"billing_period": "2000-01"} | form, csrf=False)
        assert started.status_code == 403
    # Nothing ran: the compensation was not retried and no billing run exists.
    assert setup.release.calls == 1
    saga = await setup.app.state.dotmac.coordinator.get_saga(saga_id, tenant_id=TENANT)
    assert str(saga["status"]) == "compensation_failed"
    assert "No billing runs yet" in (await console.get("/billing")).text
    # Sign-in is a form too: without the token of the sign-in page it is refused.
    async with setup.client() as fresh:
        refused = await fresh.post("/console/login", data={"api_key": setup.keys.admin})
        assert refused.status_code == 403


async def test_the_saga_list_filters_and_pages_when_there_are_many_sagas(setup, session_factory):
    clock = ManualClock()
    start = clock.now()
    coordinator = SagaCoordinator(session_factory, clock=clock)
    coordinator.register_saga(passing_definition("welcome_mail"))
    coordinator.register_saga(failing_definition(HealingCompensation(failures=100)))
    for number in range(7):
        await run_saga(coordinator, "welcome_mail", f"mail-{number}", TENANT)
        clock.advance(minutes=10)
    await run_saga(coordinator, SAGA_NAME, "port-1", TENANT)
    await run_saga(coordinator, "welcome_mail", "theirs-1", OTHER_TENANT)
    console = await setup.signed_in(setup.keys.admin)

    failed = await console.get("/sagas", status="compensation_failed")
    assert "port-1" in failed.text and "mail-" not in failed.text
    by_name = await console.get("/sagas", name="welcome_mail")
    assert "mail-6" in by_name.text and "port-1" not in by_name.text
    window = await console.get(
        "/sagas",
        **{
            "from": (start + dt.timedelta(minutes=20)).strftime("%Y-%m-%dT%H:%M"),
            "to": (start + dt.timedelta(minutes=41)).strftime("%Y-%m-%dT%H:%M"),
        },
    )
    assert [f"mail-{n}" in window.text for n in range(7)] == [n in (2, 3, 4) for n in range(7)]

    seen: list[str] = []
    page = await console.get("/sagas", name="welcome_mail", limit="3")
    while True:
        seen += [s for s in (f"mail-{n}" for n in range(7)) if f">{s}<" in page.text]
        if 'rel="next"' not in page.text:
            break
        next_href = page.text.split('rel="next"')[0].rsplit('href="', 1)[1].split('"')[0]
        page = await console.client.get(next_href.replace("&amp;", "&"))
    assert sorted(seen) == [f"mail-{n}" for n in range(7)] and len(seen) == 7
    assert "theirs-1" not in "".join(seen)

    bad = await console.get("/sagas", status="sleeping")
    assert bad.status_code == 400
    assert "status must be one of" in bad.text
    bad_time = await console.get("/sagas", **{"from": "yesterday"})
    assert bad_time.status_code == 400 and "from must be a date and time" in bad_time.text


async def test_a_tenant_sees_only_its_own_sagas_and_a_platform_operator_every_tenant(
    setup, session_factory
):
    coordinator = setup.app.state.dotmac.coordinator
    await run_saga(coordinator, "welcome_mail", "ours-1", TENANT)
    await run_saga(coordinator, "welcome_mail", "theirs-1", OTHER_TENANT)
    ours = await setup.signed_in(setup.keys.admin)
    listing = (await ours.get("/sagas")).text
    assert "ours-1" in listing and "theirs-1" not in listing
    # Another tenant's saga by URL is "not found", like a missing one; so is its tenant filter.
    assert (await ours.get("/sagas/theirs-1")).status_code == 404
    assert "theirs-1" not in (await ours.get("/sagas", tenant=OTHER_TENANT)).text

    platform = await setup.signed_in(setup.keys.platform)
    everything = (await platform.get("/sagas")).text
    assert "ours-1" in everything and "theirs-1" in everything
    assert "Platform operator" in everything
    theirs_only = (await platform.get("/sagas", tenant=OTHER_TENANT)).text
    assert "theirs-1" in theirs_only and "ours-1" not in theirs_only
    assert (await platform.get("/sagas/theirs-1")).status_code == 200


async def test_retry_compensation_asks_for_confirmation_then_ends_the_saga_compensated(setup):
    coordinator = setup.app.state.dotmac.coordinator
    assert await run_saga(coordinator, SAGA_NAME, "port-9", TENANT) == "compensation_failed"
    reader = await setup.signed_in(setup.keys.operator)
    assert "Retry compensation" not in (await reader.get("/sagas/port-9")).text
    assert (await reader.get("/sagas/port-9/actions/retry-compensation")).status_code == 403

    console = await setup.signed_in(setup.keys.admin)
    page = await console.get("/sagas/port-9")
    assert "compensation_failed" in page.text and "Retry compensation" in page.text
    confirm = await console.get("/sagas/port-9/actions/retry-compensation")
    assert confirm.status_code == 200 and "Confirm: Retry compensation" in confirm.text
    no_reason = await console.post("/sagas/port-9/actions/retry-compensation", {"reason": " "})
    assert no_reason.status_code == 400 and "reason" in no_reason.text
    assert setup.release.calls == 1
    done = await console.post(
        "/sagas/port-9/actions/retry-compensation", {"reason": "the port service is back"}
    )
    assert (done.status_code, done.headers["location"]) == (
        303,
        "/console/sagas/port-9?done=retry-compensation",
    )
    after = await console.get("/sagas/port-9", done="retry-compensation")
    assert "Retry compensation: done." in after.text
    saga = await coordinator.get_saga("port-9", tenant_id=TENANT)
    assert str(saga["status"]) == "compensated"
    # Now it no longer applies: a second retry is not offered.
    assert "Retry compensation</a>" not in after.text


async def test_a_billing_run_started_in_the_console_shows_its_progress_and_report(setup):
    console = await setup.signed_in(setup.keys.admin)
    today = setup.app.state.dotmac.clock.now()
    period = (today.replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
    future = (today.replace(day=28) + dt.timedelta(days=40)).strftime("%Y-%m")
    refused = await console.post("/billing", {"billing_period": future})
    assert refused.status_code == 422 and "future" in refused.text
    started = await console.post("/billing", {"billing_period": period})
    assert started.status_code == 303
    run_path = started.headers["location"].removeprefix("/console")
    await __import__("asyncio").gather(*setup.app.state.dotmac.background)
    page = await console.get(run_path)
    assert page.status_code == 200
    assert "Steps completed" in page.text and "Report" in page.text and "Invoices" in page.text
    fragment = await console.get(run_path + "/progress")
    assert 'data-finished="true"' in fragment.text and "<html" not in fragment.text
    assert run_path.split("/")[-1] in (await console.get("/billing")).text
    other = await setup.signed_in(setup.keys.other)
    assert (await other.get(run_path)).status_code == 404


async def test_a_policy_page_shows_its_versions_their_diff_and_an_evaluation(setup):
    console = await setup.signed_in(setup.keys.operator)
    listing = await console.get("/policies")
    assert "console.discount" in listing.text and "1.0.0, 1.1.0" in listing.text
    diff = await console.get("/policies/console.discount", **{"from": "1.0.0", "to": "1.1.0"})
    assert diff.status_code == 200
    assert '<span class="del">-  value: 2</span>' in diff.text
    assert '<span class="add">+  value: 3</span>' in diff.text
    allowed = await console.post(
        "/policies/console.discount/evaluate", {"version": "1.0.0", "input": '{"years": 2}'}
    )
    assert allowed.status_code == 200 and 'data-testid="decision"' in allowed.text
    assert ">ALLOW<" in allowed.text
    denied = await console.post(
        "/policies/console.discount/evaluate", {"version": "1.1.0", "input": '{"years": 2}'}
    )
    assert ">DENY<" in denied.text
    broken = await console.post("/policies/console.discount/evaluate", {"input": '{"years": '})
    assert broken.status_code == 422
    assert "input is not valid JSON" in broken.text
    assert (await console.get("/policies/no.such.policy")).status_code == 404


async def test_an_unexpected_failure_is_a_page_without_internals_when_a_view_breaks(
    setup, monkeypatch
):
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("internal detail 7f3a")

    # The server would see the error re-raised after the page: this client keeps the page.
    transport = httpx.ASGITransport(app=setup.app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as client:
        console = ConsoleClient(client)
        await console.sign_in(setup.keys.operator)
        monkeypatch.setattr(SagaCoordinator, "page_sagas", broken)
        page = await console.get("/sagas")

    assert page.status_code == 500
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["x-frame-options"] == "DENY"
    assert "the console could not show this page" in page.text
    assert "correlation id" in page.text
    assert "internal detail 7f3a" not in page.text and "Traceback" not in page.text
