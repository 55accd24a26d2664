from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from dotmac_shared.business_logic.cli import app
from dotmac_shared.business_logic.operations import (
    BillingRunSaga,
    ServiceProvisioningSaga,
    TenantProvisioningSaga,
    shipped_coordinator,
)
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from dotmac_shared.business_logic.sagas import (
    ALL_TENANTS,
    SagaContext,
    SagaCoordinator,
)
from tests.cli.helpers import SERVICE_REQUEST, flat, one_error_line
from tests.sagas.steps import stuck_definition

TENANT = ["--tenant", "tenant123"]


async def _provision(url: str, plan: str, tenant_id: str = "tenant123") -> str:
    factory = create_session_factory(url)
    try:
        saga_id = f"svc-{plan}-{uuid.uuid4().hex[:6]}"
        await shipped_coordinator(factory).execute_saga(
            saga_name=ServiceProvisioningSaga.name,
            context=SagaContext(saga_id=saga_id, tenant_id=tenant_id, user_id="op"),
            initial_data={**SERVICE_REQUEST, "plan": plan},
        )
        return saga_id
    finally:
        await engine_of(factory).dispose()


async def _saga(url: str, saga_id: str) -> dict:
    factory = create_session_factory(url)
    try:
        return await shipped_coordinator(factory).get_saga(saga_id, tenant_id=ALL_TENANTS)
    finally:
        await engine_of(factory).dispose()


@pytest.fixture
def finished_sagas(seeded_url: str) -> dict[str, str]:
    """One completed and one compensated service provisioning saga."""
    return {
        "completed": asyncio.run(_provision(seeded_url, "standard")),
        "compensated": asyncio.run(_provision(seeded_url, "premium")),
    }


def test_shipped_coordinator_registers_the_three_shipped_sagas(tmp_path):
    async def names() -> set[str]:
        factory = create_session_factory(f"sqlite:///{tmp_path / 'c.db'}", migrate=False)
        try:
            return set(shipped_coordinator(factory).definitions)
        finally:
            await engine_of(factory).dispose()

    assert asyncio.run(names()) == {
        TenantProvisioningSaga.name,
        ServiceProvisioningSaga.name,
        BillingRunSaga.name,
    }


# --- list / show ------------------------------------------------------------------------------


def test_list_shows_every_saga_with_its_status_when_no_filter(runner, seeded_url, finished_sagas):
    result = runner.invoke(app, ["saga", "list", "--all-tenants", "--database-url", seeded_url])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "completed" in rows[finished_sagas["completed"]]
    assert "compensated" in rows[finished_sagas["compensated"]]
    assert "2 sagas" in result.stdout


def test_list_filters_by_status_and_tenant_when_asked(runner, seeded_url, finished_sagas):
    url = ["--database-url", seeded_url]
    done = runner.invoke(
        app, ["saga", "list", "--tenant", "tenant123", "--status", "completed", *url]
    )
    assert done.exit_code == 0, done.output
    assert finished_sagas["completed"] in done.stdout
    assert finished_sagas["compensated"] not in done.stdout
    other = runner.invoke(app, ["saga", "list", "--tenant", "someone-else", *url])
    assert other.exit_code == 0, other.output
    assert "0 sagas" in other.stdout


def test_list_fails_with_one_line_when_status_unknown(runner, seeded_url):
    result = runner.invoke(
        app, ["saga", "list", "--all-tenants", "--status", "stuck", "--database-url", seeded_url]
    )
    assert result.exit_code == 1
    assert "unknown saga status 'stuck'" in one_error_line(result.stderr)


def test_show_prints_the_record_and_every_step_when_saga_exists(runner, seeded_url, finished_sagas):
    saga_id = finished_sagas["compensated"]
    result = runner.invoke(
        app, ["saga", "show", saga_id, "--tenant", "tenant123", "--database-url", seeded_url]
    )
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert f"saga {saga_id} (service_provisioning v1.0.0): compensated" in out
    assert "tenant: tenant123" in out and "failed step: validate_request" in out
    steps = [line.split("│")[2].strip() for line in result.stdout.splitlines() if "│" in line]
    assert steps[0] == "validate_request"


def test_show_fails_with_one_line_when_saga_id_unknown(runner, seeded_url):
    result = runner.invoke(
        app, ["saga", "show", "no-such-saga", "--all-tenants", "--database-url", seeded_url]
    )
    assert result.exit_code == 1
    assert one_error_line(result.stderr) == "error: no saga with id 'no-such-saga'"


# --- resume / cancel --------------------------------------------------------------------------


def test_resume_drives_an_abandoned_saga_to_completion(runner, seeded_url, abandoned_saga):
    result = runner.invoke(
        app, ["saga", "resume", abandoned_saga, *TENANT, "--database-url", seeded_url]
    )
    assert result.exit_code == 0, result.output
    assert f"saga {abandoned_saga} (service_provisioning): completed" in flat(result.stdout)
    saga = asyncio.run(_saga(seeded_url, abandoned_saga))
    assert saga["status"] == "completed"
    assert [s["status"] for s in saga["steps"]] == ["completed"] * 5


def test_resume_reports_the_stored_outcome_when_saga_finished(runner, seeded_url, finished_sagas):
    saga_id = finished_sagas["compensated"]
    result = runner.invoke(app, ["saga", "resume", saga_id, *TENANT, "--database-url", seeded_url])
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert "compensated" in out and "failed step: validate_request" in out


def test_cancel_compensates_an_abandoned_saga(runner, seeded_url, abandoned_saga):
    result = runner.invoke(
        app, ["saga", "cancel", abandoned_saga, *TENANT, "--database-url", seeded_url]
    )
    assert result.exit_code == 0, result.output
    out = flat(result.stdout)
    assert f"saga {abandoned_saga} (service_provisioning): compensated" in out
    assert "cancelled on request" in out
    saga = asyncio.run(_saga(seeded_url, abandoned_saga))
    assert saga["status"] == "compensated"
    assert saga["steps"][1]["status"] == "compensated"  # the address was released


@pytest.mark.parametrize("command", ["resume", "cancel"])
def test_resume_and_cancel_fail_with_one_line_when_saga_id_unknown(runner, seeded_url, command):
    result = runner.invoke(app, ["saga", command, "ghost", *TENANT, "--database-url", seeded_url])
    assert result.exit_code == 1
    assert one_error_line(result.stderr) == "error: no saga with id 'ghost'"


# --- tenant scope -----------------------------------------------------------------------------


@pytest.fixture
def two_tenants(seeded_url: str, finished_sagas: dict[str, str]) -> dict[str, str]:
    """The finished sagas of tenant123, plus one saga of another tenant."""
    other = asyncio.run(_provision(seeded_url, "standard", tenant_id="tenant-other"))
    return {**finished_sagas, "other": other}


@pytest.mark.parametrize(
    "args",
    [["list"], ["show", "x"], ["resume", "x"], ["cancel", "x"]],
    ids=["list", "show", "resume", "cancel"],
)
def test_saga_commands_exit_2_when_no_tenant_scope_is_given(runner, seeded_url, args):
    result = runner.invoke(app, ["saga", *args, "--database-url", seeded_url])
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert "--tenant TENANT" in line and "--all-tenants" in line


def test_saga_list_exits_2_when_both_tenant_and_all_tenants_given(runner, seeded_url):
    args = ["saga", "list", *TENANT, "--all-tenants", "--database-url", seeded_url]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "not both" in one_error_line(result.stderr)


def rows_of(stdout: str) -> dict[str, list[str]]:
    """Table rows by saga id: the cells of each row."""
    return {
        cells[0]: cells
        for line in stdout.splitlines()
        if "│" in line
        for cells in [[cell.strip() for cell in line.split("│")[1:-1]]]
    }


def test_list_shows_one_tenants_sagas_unless_all_tenants(runner, seeded_url, two_tenants):
    url = ["--database-url", seeded_url]
    mine = runner.invoke(app, ["saga", "list", *TENANT, *url])
    assert mine.exit_code == 0, mine.output
    rows = rows_of(mine.stdout)
    assert two_tenants["other"] not in rows and "2 sagas" in mine.stdout
    everyone = runner.invoke(app, ["saga", "list", "--all-tenants", *url])
    assert everyone.exit_code == 0, everyone.output
    rows = rows_of(everyone.stdout)
    assert "3 sagas" in everyone.stdout
    header = next(line for line in everyone.stdout.splitlines() if "┃" in line)
    assert [cell.strip() for cell in header.split("┃")[1:-1]][3] == "tenant"
    assert rows[two_tenants["other"]][3] == "tenant-other"
    assert rows[two_tenants["completed"]][3] == "tenant123"


@pytest.mark.parametrize("command", ["show", "resume", "cancel"])
def test_saga_of_another_tenant_is_reported_as_missing_by_the_cli(
    runner, seeded_url, two_tenants, command
):
    saga_id = two_tenants["other"]
    result = runner.invoke(app, ["saga", command, saga_id, *TENANT, "--database-url", seeded_url])
    assert result.exit_code == 1
    assert one_error_line(result.stderr) == f"error: no saga with id '{saga_id}'"
    shown = runner.invoke(
        app, ["saga", "show", saga_id, "--all-tenants", "--database-url", seeded_url]
    )
    assert shown.exit_code == 0, shown.output
    assert "tenant: tenant-other" in flat(shown.stdout)


async def _stuck_saga_of_unknown_type(url: str) -> str:
    """A compensation_failed saga of a type the CLI's coordinator does not know."""
    factory = create_session_factory(url)
    try:
        coordinator = SagaCoordinator(factory)
        coordinator.register_saga(stuck_definition())
        saga_id = f"mystery-{uuid.uuid4().hex[:8]}"
        await coordinator.execute_saga(
            saga_name="mystery", context=SagaContext(saga_id=saga_id, tenant_id="tenant123")
        )
        return saga_id
    finally:
        await engine_of(factory).dispose()


def test_resume_refuses_a_saga_of_unknown_type_and_leaves_it_untouched(runner, seeded_url):
    saga_id = asyncio.run(_stuck_saga_of_unknown_type(seeded_url))
    before = asyncio.run(_saga(seeded_url, saga_id))
    assert before["status"] == "compensation_failed"
    result = runner.invoke(app, ["saga", "resume", saga_id, *TENANT, "--database-url", seeded_url])
    assert result.exit_code == 1
    assert one_error_line(result.stderr).startswith("error: unknown saga 'mystery'")
    after = asyncio.run(_saga(seeded_url, saga_id))
    assert after == before
    assert after["lease_owner"] is None and after["status"] == "compensation_failed"


# --- worker -----------------------------------------------------------------------------------


def test_worker_once_takes_up_the_abandoned_saga_and_says_how_many(
    runner, seeded_url, abandoned_saga
):
    result = runner.invoke(app, ["worker", "--once", "--database-url", seeded_url])
    assert result.exit_code == 0, result.output
    assert "recovery pass took up 1 saga" in flat(result.stdout)
    assert asyncio.run(_saga(seeded_url, abandoned_saga))["status"] == "completed"
    again = runner.invoke(app, ["worker", "--once", "--database-url", seeded_url])
    assert "recovery pass took up 0 sagas" in flat(again.stdout)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_worker_recovers_then_stops_cleanly_when_signalled(seeded_url, abandoned_saga, sig):
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from dotmac_shared.business_logic.cli import main; main()",
            "worker",
            "--poll-interval",
            "0.05",
            "--database-url",
            seeded_url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "started" in first, first + process.stderr.read()  # type: ignore[union-attr]
        deadline = time.monotonic() + 20
        while asyncio.run(_saga(seeded_url, abandoned_saga))["status"] != "completed":
            assert time.monotonic() < deadline, "the worker did not recover the saga"
            time.sleep(0.1)
        process.send_signal(sig)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "worker stopped after recovering 1 saga" in flat(out)
    assert "Traceback" not in err


class _BrokenNotifier:
    async def notify(self, session, **kwargs):
        raise ConnectionError("mail relay down")

    async def notify_many(self, session, messages):
        raise ConnectionError("mail relay down")


async def _incident(url: str) -> str:
    """A service provisioning saga past activation whose notification kept failing."""
    factory = create_session_factory(url)
    try:
        coordinator = SagaCoordinator(factory)
        coordinator.register_saga(
            ServiceProvisioningSaga.create_definition(notifier=_BrokenNotifier())
        )
        saga_id = f"svc-incident-{uuid.uuid4().hex[:6]}"
        outcome = await coordinator.execute_saga(
            saga_name=ServiceProvisioningSaga.name,
            context=SagaContext(saga_id=saga_id, tenant_id="tenant123"),
            initial_data={**SERVICE_REQUEST, "plan": "standard"},
        )
        assert outcome.status == "incident"
        return saga_id
    finally:
        await engine_of(factory).dispose()


def test_history_prints_every_transition_when_saga_finished(runner, seeded_any_url):
    saga_id = asyncio.run(_provision(seeded_any_url, "standard"))
    url = ["--database-url", seeded_any_url]
    table = runner.invoke(app, ["saga", "history", saga_id, *TENANT, *url])
    as_json = runner.invoke(app, ["saga", "history", saga_id, *TENANT, "--json", *url])

    assert table.exit_code == 0, table.output
    assert "saga -> running" in flat(table.stdout) and "saga -> completed" in flat(table.stdout)
    kinds = [event["kind"] for event in json.loads(as_json.stdout)]
    assert kinds[0] == "saga.running" and kinds[-1] == "saga.completed"


def test_retry_step_completes_an_incident_and_records_who_when_the_cause_is_fixed(
    runner, seeded_any_url
):
    saga_id = asyncio.run(_incident(seeded_any_url))
    args = ["--reason", "relay back up", "--operator", "alice", "--json"]

    result = runner.invoke(
        app, ["saga", "retry-step", saga_id, *args, *TENANT, "--database-url", seeded_any_url]
    )

    assert result.exit_code == 0, result.output
    saga = json.loads(result.stdout)
    assert saga["status"] == "completed"
    (action,) = [e for e in saga["history"] if e["kind"] == "action.retry_step"]
    assert (action["operator"], action["reason"]) == ("alice", "relay back up")


def test_repair_commands_fail_with_one_line_when_they_do_not_apply(runner, seeded_any_url):
    url = ["--database-url", seeded_any_url]
    saga_id = asyncio.run(_provision(seeded_any_url, "standard"))
    result = runner.invoke(
        app, ["saga", "retry-compensation", saga_id, "--reason", "why", *TENANT, *url]
    )
    incident = asyncio.run(_incident(seeded_any_url))
    cancel = runner.invoke(app, ["saga", "cancel", incident, "--reason", "stop", *TENANT, *url])

    assert result.exit_code == 1
    assert "applies to a saga in compensation_failed" in one_error_line(result.stderr)
    assert cancel.exit_code == 1
    assert "past its pivot step activate_service" in one_error_line(cancel.stderr)
