"""The console in real Chromium (Debian's ``chromium``, driven by Playwright), on both databases.

A tenant admin signs in, filters the saga list, opens a failed saga, retries its
compensation behind the confirmation page and sees the saga end ``compensated``; another
tenant's saga, opened by URL, is not found. A platform operator watches a billing run of a
tenant finish, its report appearing without a reload. Each page is saved as a screenshot in
the test's folder (``DOTMAC_UPDATE_SCREENSHOTS=1`` also refreshes the README's
``docs/console-saga.png``).

The server is the app of ``create_app`` under uvicorn on a free loopback port, in a thread
with its own event loop; the tests drive one Chromium per module with Playwright's async
API, in the module's event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import uvicorn
from playwright.async_api import Browser, Page, async_playwright, expect

from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.http import create_app
from dotmac_shared.business_logic.operations import (
    seed_demo_data,
    shipped_coordinator,
    start_billing_run,
)
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from dotmac_shared.business_logic.sagas import SagaCoordinator
from tests.console.support import (
    OTHER_TENANT,
    SAGA_NAME,
    TENANT,
    HealingCompensation,
    Keys,
    failing_definition,
    make_keys,
    passing_definition,
    run_saga,
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
README_SCREENSHOT = Path(__file__).parents[2] / "docs" / "console-saga.png"
FAILED_SAGA = "port-reservation-7"


pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for the module's tests (each test opens its own context: own cookies)."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


async def _prepare(url: str, release: HealingCompensation) -> Keys:
    """Demo data, keys, a saga stuck in compensation_failed, sagas of both tenants."""
    factory = create_session_factory(url)
    try:
        await seed_demo_data(factory, customers=2)
        keys = await make_keys(factory)
        coordinator = SagaCoordinator(factory)
        coordinator.register_saga(failing_definition(release))
        coordinator.register_saga(passing_definition("welcome_mail"))
        for number in range(3):
            await run_saga(coordinator, "welcome_mail", f"welcome-{number}", TENANT)
        await run_saga(coordinator, "welcome_mail", "theirs-1", OTHER_TENANT)
        assert await run_saga(coordinator, SAGA_NAME, FAILED_SAGA, TENANT) == (
            "compensation_failed"
        )
        return keys
    finally:
        await engine_of(factory).dispose()


@pytest_asyncio.fixture(loop_scope="module")
async def served(database_url: str) -> AsyncIterator[tuple[str, Keys, HealingCompensation]]:
    """The app served on a free loopback port: its base URL, the keys, the saga's fake."""
    release = HealingCompensation(failures=1)
    keys = await _prepare(database_url, release)
    factory = create_session_factory(database_url, migrate=False)
    app: Any = create_app(factory)
    app.state.dotmac.coordinator.register_saga(failing_definition(release))
    app.state.dotmac.coordinator.register_saga(passing_definition("welcome_mail"))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))

    async def serve_then_close() -> None:
        try:
            await server.serve()
        finally:
            await engine_of(factory).dispose()  # in the server's loop: its connections

    thread = threading.Thread(target=asyncio.run, args=(serve_then_close(),), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        await asyncio.sleep(0.05)  # waiting for the server to listen, not for time to pass
    try:
        yield f"http://127.0.0.1:{port}", keys, release
    finally:
        server.should_exit = True
        await asyncio.to_thread(thread.join, 30)
        assert not thread.is_alive(), "the server did not stop"


async def _shot(page: Page, folder: Path, name: str) -> None:
    await page.screenshot(path=folder / f"{name}.png", full_page=True)


async def test_an_admin_retries_a_failed_compensation_in_the_browser_and_sees_it_compensated(
    browser: Browser, served, tmp_path: Path
):
    base, keys, release = served
    context = await browser.new_context(viewport={"width": 1366, "height": 800})
    page = await context.new_page()
    try:
        # Signing in, by keyboard: the key field has the focus, Enter submits.
        await page.goto(f"{base}/console")
        await expect(page).to_have_url(f"{base}/console/login?next=%2Fconsole%2Fsagas")
        await expect(page.get_by_label("API key")).to_be_focused()
        await _shot(page, tmp_path, "01-sign-in")
        await page.keyboard.type(keys.admin)
        await page.keyboard.press("Enter")
        await expect(page).to_have_url(f"{base}/console/sagas")
        await expect(page.get_by_role("link", name="theirs-1")).to_have_count(0)
        await expect(page.get_by_role("link", name=FAILED_SAGA)).to_be_visible()
        # The first Tab of a page reaches its skip link.
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        await _shot(page, tmp_path, "02-sagas")

        # Filtering the list: only the failed saga is left.
        await page.get_by_label("Status").select_option("compensation_failed")
        await page.get_by_role("button", name="Filter").click()
        await expect(page).to_have_url(
            f"{base}/console/sagas?name=&status=compensation_failed&from=&to="
        )
        rows = page.get_by_role("table", name="Sagas").locator("tbody tr")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text(FAILED_SAGA)
        await _shot(page, tmp_path, "03-sagas-filtered")

        # The failed saga: its steps, why it failed, the action that applies.
        await page.get_by_role("link", name=FAILED_SAGA).click()
        await expect(page.get_by_test_id("saga-status")).to_have_text("compensation_failed")
        await expect(page.get_by_role("table", name="Steps")).to_contain_text("reserve_port")
        await expect(page.get_by_role("table", name="Steps")).to_contain_text(
            "the card was declined"
        )
        await _shot(page, tmp_path, "04-saga-failed")

        # Retrying its compensation: a confirmation page first, with a reason.
        await page.get_by_role("link", name="Retry compensation").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text(
            "Retry the failed compensation?"
        )
        await _shot(page, tmp_path, "05-confirm")
        assert release.calls == 1  # nothing ran before the confirmation
        await page.get_by_label("Reason").fill("the port service is back up")
        await page.get_by_role("button", name="Confirm: Retry compensation").click()
        await expect(page.get_by_role("status")).to_have_text("Retry compensation: done.")
        await expect(page.get_by_test_id("saga-status")).to_have_text("compensated")
        assert release.calls == 2
        # The timeline records the action with who and why.
        history = page.get_by_role("list", name="Event history")
        await expect(history).to_contain_text("action.retry_compensation")
        await expect(history).to_contain_text("the port service is back up")
        await _shot(page, tmp_path, "06-saga-compensated")
        if os.environ.get("DOTMAC_UPDATE_SCREENSHOTS") == "1":
            README_SCREENSHOT.parent.mkdir(exist_ok=True)
            await page.screenshot(path=README_SCREENSHOT, full_page=True)

        # Another tenant's saga, by URL: not found, exactly like a missing one.
        response = await page.goto(f"{base}/console/sagas/theirs-1")
        assert response is not None and response.status == 404
        await expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
        await _shot(page, tmp_path, "07-other-tenant")
    finally:
        await context.close()
    for name in ("01-sign-in", "04-saga-failed", "06-saga-compensated", "07-other-tenant"):
        assert (tmp_path / f"{name}.png").stat().st_size > 0


async def test_a_platform_operator_watches_a_billing_run_finish_without_reloading(
    browser: Browser, served, database_url: str, tmp_path: Path
):
    base, keys, _release = served
    # A run whose process stopped after committing it: its saga stays running, under a
    # lease, until the test's coordinator (on a clock moved past the lease) takes it over.
    clock = ManualClock()
    factory = create_session_factory(database_url, migrate=False)
    try:
        period = (clock.now().replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
        started = await start_billing_run(factory, TENANT, period, lease_seconds=30, clock=clock)
        started.task.cancel()
        await asyncio.gather(started.task, return_exceptions=True)
        run_id = started.billing_run_id

        context = await browser.new_context(viewport={"width": 1366, "height": 800})
        page = await context.new_page()
        try:
            await page.goto(f"{base}/console/login")
            await page.get_by_label("API key").fill(keys.platform)
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_test_id("who")).to_contain_text("Platform operator")
            await page.get_by_role("link", name="Billing runs").click()
            runs = page.get_by_role("table", name="Billing runs")
            await expect(runs).to_contain_text(TENANT)
            await _shot(page, tmp_path, "11-billing-runs")
            await page.get_by_role("link", name=run_id).click()
            await expect(page.get_by_test_id("run-status")).to_contain_text("running")
            await expect(page.get_by_role("region", name="Report")).to_have_count(0)
            await _shot(page, tmp_path, "12-billing-running")
            await page.evaluate("window.notReloaded = true")

            clock.advance(seconds=31)
            resumed = await shipped_coordinator(factory, clock=clock).resume_saga(
                run_id, tenant_id=TENANT
            )
            assert str(resumed["status"]) == "completed"

            # The page polls its progress: the report appears in place, no reload.
            await expect(page.get_by_test_id("run-status")).to_contain_text("completed")
            await expect(page.get_by_role("region", name="Report")).to_contain_text("Invoices")
            assert await page.evaluate("window.notReloaded") is True
            await _shot(page, tmp_path, "13-billing-finished")
        finally:
            await context.close()
    finally:
        await engine_of(factory).dispose()
