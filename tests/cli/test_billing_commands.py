from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dotmac_shared.business_logic.cli import app
from dotmac_shared.business_logic.cli._billing import _period
from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.operations import SandboxPaymentGateway, run_billing
from dotmac_shared.business_logic.operations._billing_steps import billing_run_id
from dotmac_shared.business_logic.operations.models import BillingRun
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from tests.cli.helpers import SEEDED_CUSTOMERS, flat, one_error_line
from tests.operations.gateways import LinkGateway

TENANT = "tenant123"


def last_full_month() -> str:
    first = dt.datetime.now(dt.UTC).date().replace(day=1)
    previous = first - dt.timedelta(days=1)
    return f"{previous.year:04d}-{previous.month:02d}"


def report_rows(stdout: str) -> dict[str, str]:
    return {
        cells[1].strip(): cells[2].strip()
        for cells in (line.split("│") for line in stdout.splitlines())
        if len(cells) == 4
    }


def run_args(url: str, period: str, tenant: str = TENANT) -> list[str]:
    return ["billing", "run", "--tenant", tenant, "--period", period, "--database-url", url]


def report_args(url: str, period: str, tenant: str = TENANT) -> list[str]:
    return ["billing", "report", "--tenant", tenant, "--period", period, "--database-url", url]


def test_run_bills_every_customer_and_prints_the_report(runner, seeded_url):
    period = last_full_month()
    result = runner.invoke(app, run_args(seeded_url, period))
    assert result.exit_code == 0, result.output
    assert "billing run" in result.stdout and "5/5 steps" in result.stdout  # the progress bar
    rows = report_rows(result.stdout)
    assert rows["billing_run_id"] == billing_run_id(TENANT, period)
    assert rows["billing_period"] == period
    assert int(rows["invoices"]) == SEEDED_CUSTOMERS
    assert int(rows["paid"]) + int(rows["payment_failed"]) == SEEDED_CUSTOMERS


def test_report_prints_the_finalized_run_report_when_run_finished(runner, seeded_url):
    period = last_full_month()
    ran = runner.invoke(app, run_args(seeded_url, period))
    assert ran.exit_code == 0, ran.output
    result = runner.invoke(app, report_args(seeded_url, period))
    assert result.exit_code == 0, result.output
    assert report_rows(result.stdout) == report_rows(ran.stdout)


def test_run_prints_the_stored_report_without_billing_again_when_period_finished(
    runner, seeded_url
):
    period = last_full_month()
    first = runner.invoke(app, run_args(seeded_url, period))
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, run_args(seeded_url, period))
    assert second.exit_code == 0, second.output
    assert "had already finished" in flat(second.stdout)
    assert report_rows(second.stdout) == report_rows(first.stdout)


@pytest.mark.parametrize("period", ["2026-13", "2026-5", "May", "2026/05", "26-05", ""])
def test_run_fails_with_one_line_when_period_malformed(runner, seeded_url, period):
    result = runner.invoke(app, run_args(seeded_url, period))
    assert result.exit_code == 1
    assert "YYYY-MM" in one_error_line(result.stderr)
    listed = runner.invoke(app, ["saga", "list", "--all-tenants", "--database-url", seeded_url])
    assert "0 sagas" in listed.stdout  # refused before any saga started


def test_run_fails_with_one_line_when_period_in_future(runner, seeded_url):
    result = runner.invoke(app, run_args(seeded_url, "2999-01"))
    assert result.exit_code == 1
    assert "billing period 2999-01 is in the future" in one_error_line(result.stderr)


def test_run_fails_with_one_line_when_tenant_unknown(runner, seeded_url):
    result = runner.invoke(app, run_args(seeded_url, last_full_month(), tenant="nobody"))
    assert result.exit_code == 1
    assert one_error_line(result.stderr) == "error: unknown tenant 'nobody'"


def test_run_is_a_usage_error_when_period_missing(runner, seeded_url):
    result = runner.invoke(
        app, ["billing", "run", "--tenant", TENANT, "--database-url", seeded_url]
    )
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_report_fails_with_one_line_when_no_run_for_period(runner, seeded_url):
    result = runner.invoke(app, report_args(seeded_url, "2026-01"))
    assert result.exit_code == 1
    assert "no billing run for tenant 'tenant123' and period 2026-01" in one_error_line(
        result.stderr
    )


def test_report_fails_with_one_line_when_period_malformed(runner, seeded_url):
    result = runner.invoke(app, report_args(seeded_url, "last-month"))
    assert result.exit_code == 1
    assert "YYYY-MM" in one_error_line(result.stderr)


def test_report_fails_with_one_line_when_run_not_finalized(runner, seeded_url):
    async def open_run() -> None:
        factory = create_session_factory(seeded_url)
        try:
            async with factory() as session, session.begin():
                session.add(
                    BillingRun(
                        id=billing_run_id(TENANT, "2026-02"),
                        tenant_id=TENANT,
                        billing_period="2026-02",
                        status="running",
                        report={},
                    )
                )
        finally:
            await engine_of(factory).dispose()

    asyncio.run(open_run())
    result = runner.invoke(app, report_args(seeded_url, "2026-02"))
    assert result.exit_code == 1
    assert "is running, not finalized" in one_error_line(result.stderr)


def _bill_with_gateway_down(url: str, period: str) -> dict:
    async def bill() -> dict:
        factory = create_session_factory(url)
        try:
            link = LinkGateway(SandboxPaymentGateway(factory), down=True)
            return await run_billing(factory, TENANT, period, gateway=lambda _factory: link)
        finally:
            await engine_of(factory).dispose()

    return asyncio.run(bill())


def test_run_retry_bills_again_when_the_latest_attempt_was_compensated(runner, seeded_url):
    period = last_full_month()
    assert _bill_with_gateway_down(seeded_url, period)["status"] == "compensated"
    plain = runner.invoke(app, run_args(seeded_url, period))
    assert plain.exit_code == 1
    assert "compensated" in plain.stdout
    assert "start a new attempt with --retry" in one_error_line(plain.stderr)

    result = runner.invoke(app, [*run_args(seeded_url, period), "--retry"])

    assert result.exit_code == 0, result.output
    assert "5/5 steps" in result.stdout
    rows = report_rows(result.stdout)
    assert rows["billing_run_id"] == billing_run_id(TENANT, period, 2)
    assert rows["attempt"] == "2"
    assert int(rows["invoices"]) == SEEDED_CUSTOMERS
    assert int(rows["paid"]) + int(rows["payment_failed"]) == SEEDED_CUSTOMERS
    report = runner.invoke(app, report_args(seeded_url, period))
    assert report.exit_code == 0, report.output
    assert report_rows(report.stdout) == rows
    attempts = [
        [cell.strip() for cell in line.split("│")[1:4]]
        for line in report.stdout.splitlines()
        if line.count("│") == 6
    ]
    assert attempts == [
        ["1", billing_run_id(TENANT, period), "cancelled"],
        ["2", billing_run_id(TENANT, period, 2), "finalized"],
    ]


def test_run_retry_fails_with_one_line_when_the_latest_attempt_completed(runner, seeded_url):
    period = last_full_month()
    assert runner.invoke(app, run_args(seeded_url, period)).exit_code == 0
    result = runner.invoke(app, [*run_args(seeded_url, period), "--retry"])
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert f"cannot retry billing period {period} of tenant {TENANT}: attempt 1" in line
    assert "is completed" in line


def test_run_retry_fails_with_one_line_when_the_period_was_never_billed(runner, seeded_url):
    result = runner.invoke(app, [*run_args(seeded_url, last_full_month()), "--retry"])
    assert result.exit_code == 1
    assert "was never run: nothing to retry" in one_error_line(result.stderr)
    listed = runner.invoke(app, ["saga", "list", "--all-tenants", "--database-url", seeded_url])
    assert "0 sagas" in listed.stdout  # refused before any saga started


def test_run_logs_json_lines_with_tenant_and_saga_ids_when_log_json(runner, seeded_url):
    period = last_full_month()
    result = runner.invoke(app, ["--log-json", *run_args(seeded_url, period)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    finalized = [r for r in records if "finalized" in r["message"]]
    assert finalized, result.stderr
    record = finalized[0]
    assert record["tenant_id"] == TENANT
    assert record["saga_id"] == billing_run_id(TENANT, period)
    assert "correlation_id" in record and record["level"] == "INFO"


@settings(max_examples=60, deadline=None)
@given(
    year=st.integers(min_value=1900, max_value=2025), month=st.integers(min_value=1, max_value=12)
)
def test_period_is_canonical_yyyy_mm_when_valid_past_month(year, month):
    assert _period(f"{year:04d}-{month:02d}") == f"{year:04d}-{month:02d}"


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=12).filter(lambda t: not t[:7].replace("-", "").isdigit()))
def test_period_is_refused_when_not_yyyy_mm(text):
    with pytest.raises(InvalidInputError):
        _period(text)
