"""The README's main job: the spec's three examples and a billing run, on embedded SQLite."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

from rich.console import Console
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.cli._billing import print_report, run_billing_with_progress
from dotmac_shared.business_logic.cli._output import fail
from dotmac_shared.business_logic.idempotency import IdempotencyKey, IdempotencyManager
from dotmac_shared.business_logic.operations import (
    BillingRunSaga,
    ServiceProvisioningSaga,
    seed_demo_data,
)
from dotmac_shared.business_logic.operations._seed import DEMO_TENANT_ID
from dotmac_shared.business_logic.operations.notifications import (
    NotificationRelay,
    SmtpTransport,
    outbox_counts,
)
from dotmac_shared.business_logic.persistence import (
    create_session_factory,
    display_database_url,
    engine_of,
)
from dotmac_shared.business_logic.policies import PlanEligibilityEngine, PolicyContext
from dotmac_shared.business_logic.sagas import SagaContext, SagaCoordinator, SagaResult

if TYPE_CHECKING:
    from dotmac_shared.business_logic.cli._local_smtp import LocalSmtpServer

__all__ = ["run_demo"]

SPEC_CUSTOMER = {
    "id": "cust789",
    "customer_type": "residential",
    "credit_score": 650,
    "outstanding_balance": 0.0,
    "location": {"service_coverage": True},
}
NEW_TENANT = {
    "name": "New Tenant",
    "domain": "new-tenant",
    "plan": "basic",
    "admin_email": "admin@newtenant.com",
}

#: Notices the demo relays: enough to show each kind, few enough to keep the demo quick.
DEMO_RELAY_BATCH = 20


def _last_full_month(today: dt.date) -> str:
    first = today.replace(day=1)
    previous = first - dt.timedelta(days=1)
    return f"{previous.year:04d}-{previous.month:02d}"


#: What installs the demo's local SMTP server.
DEMO_EXTRA_HINT = "pip install 'dotmac-business-logic[demo]'"


def local_smtp_server() -> type[LocalSmtpServer]:
    """The demo's loopback SMTP server class; a one-line error without the ``[demo]`` extra.

    ``aiosmtpd`` is a demo (and test) need, not the library's: a service that installs the
    library does not get an SMTP server with it.

    Raises:
        typer.Exit: ``aiosmtpd`` is not installed (after printing how to install it).
    """
    try:
        from dotmac_shared.business_logic.cli._local_smtp import LocalSmtpServer  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        fail(
            f"the demo e-mails into a local SMTP server, which needs the demo extra "
            f"({exc.name or exc} is not installed): {DEMO_EXTRA_HINT}"
        )
    return LocalSmtpServer


def run_demo(url: str, *, customers: int, console: Console) -> dict[str, Any]:
    """Run the demo against ``url``; returns the summary it printed."""
    smtp_server = local_smtp_server()  # before any work: a missing extra fails at once
    return asyncio.run(_demo(url, customers, console, smtp_server))


async def _demo(
    url: str, customers: int, console: Console, smtp_server: type[LocalSmtpServer]
) -> dict[str, Any]:
    started = time.perf_counter()
    factory = create_session_factory(url)
    try:
        seeded = await seed_demo_data(factory, customers=customers)
        console.rule("[bold]1. Plan eligibility (policy-as-code)")
        context = PolicyContext(
            tenant_id="tenant123", user_id="user456", operation="plan_eligibility_check"
        )
        eligibility = PlanEligibilityEngine().check_plan_eligibility(
            plan_type="residential_basic", customer_data=SPEC_CUSTOMER, context=context
        )
        console.print(f"Eligible: {eligibility['eligible']}")
        console.print(f"Policy Result: {eligibility['policy_result']}")

        console.rule("[bold]2. Idempotent tenant provisioning, twice")
        manager = IdempotencyManager(factory)
        key = IdempotencyKey.generate("tenant_provisioning", "tenant123", NEW_TENANT)
        tenants = []
        for attempt in (1, 2):
            result = await manager.execute_idempotent(
                idempotency_key=key, operation_data=NEW_TENANT, context={"user_id": "user123"}
            )
            tenants.append(result)
            tenant = result.data["tenant_id"] if result.data else result.error
            console.print(
                f"call {attempt}: Success: {result.success}  Tenant ID: {tenant}  "
                f"from cache: {result.from_cache}  ({result.duration_ms:.1f} ms)"
            )

        console.rule("[bold]3. Service provisioning sagas")
        coordinator = SagaCoordinator(factory)
        coordinator.register_saga(ServiceProvisioningSaga.create_definition())
        coordinator.register_saga(BillingRunSaga.create_definition())

        async def provision(plan: str) -> SagaResult:
            return await coordinator.execute_saga(
                saga_name="service_provisioning",
                context=SagaContext(
                    saga_id=str(uuid.uuid4()), tenant_id="tenant123", user_id="user456"
                ),
                initial_data={
                    "customer_id": "cust789",
                    "service_type": "internet",
                    "plan": plan,
                    "billing_period": "monthly",
                },
            )

        ok = await provision("standard")
        console.print(f"Status: {ok['status']}")
        console.print(f"Service ID: {ok['step_results']['activate_service']['service_id']}")
        refused = await provision("premium")  # a business plan: a residential customer is refused
        console.print(
            f"Premium for a residential customer: {refused['status']} at "
            f"{refused['failed_step']}: {refused['error']}"
        )

        period = _last_full_month(dt.datetime.now(dt.UTC).date())
        console.rule(f"[bold]4. Billing run for {period} over {seeded.customers} customers")
        report = await _billing_with_progress(factory, coordinator, period, console)
        _print_report(report, console)

        console.rule("[bold]5. Notifications: the outbox relayed to a local SMTP server")
        mailed = await _relay_notifications(factory, console, smtp_server)
        summary = {
            "eligible": eligibility["eligible"],
            "tenant_id": tenants[0].data["tenant_id"] if tenants[0].data else None,
            "second_call_from_cache": tenants[1].from_cache,
            "service_status": ok["status"],
            "refused_status": refused["status"],
            "billing": report,
            "notifications": mailed,
            "seconds": round(time.perf_counter() - started, 1),
        }
        console.rule("[bold]Done")
        shown = display_database_url(url)
        console.print(
            f"Demo finished in {summary['seconds']} s on {shown}: policies decided, the tenant "
            "was provisioned once (then served from cache), one service activated and one "
            f"refused and compensated, {report.get('invoices', 0)} invoices billed, and "
            f"{mailed['sent']} notices e-mailed."
        )
        return summary
    finally:
        await engine_of(factory).dispose()


async def _billing_with_progress(
    factory: async_sessionmaker[AsyncSession],
    coordinator: SagaCoordinator,
    period: str,
    console: Console,
) -> dict[str, Any]:
    outcome = await run_billing_with_progress(factory, coordinator, DEMO_TENANT_ID, period, console)
    if outcome["status"] != "completed":
        message = outcome["error"]["message"] if outcome["error"] else ""
        console.print(f"[red]billing run {outcome['status']}[/]: {message}")
        return {"status": outcome["status"], "error": outcome["error"]}
    report: dict[str, Any] = dict(outcome["step_results"]["finalize"])
    return report


async def _relay_notifications(
    factory: async_sessionmaker[AsyncSession],
    console: Console,
    smtp_server: type[LocalSmtpServer],
) -> dict[str, Any]:
    """Relay one batch of the outbox into an SMTP server on loopback; show what arrived."""
    with smtp_server() as server:
        relay = NotificationRelay(factory, [SmtpTransport(server.url)], batch_size=DEMO_RELAY_BATCH)
        try:
            relayed = await relay.relay_batch()
        finally:
            await relay.aclose()
        received = list(server.messages)
    console.print(
        f"relay {relay.relay_id} delivered {relayed.sent} notices to {server.url} "
        f"({relayed.retried} to retry, {relayed.dead} dead); the server received {len(received)}:"
    )
    shown: set[str] = set()
    for message in received:
        kind = str(message.get("X-Dotmac-Notice", ""))
        if kind not in shown:  # one e-mail of each notice
            shown.add(kind)
            console.print(
                f"  Message-ID: {str(message['Message-ID']).strip()}\n"
                f"  To: {message['To']}\n  Subject: {message['Subject']}",
                soft_wrap=True,
                highlight=False,
                markup=False,
            )
    if received:
        first = received[0]
        body = first.get_body(("plain",))
        text = body.get_content() if isinstance(body, EmailMessage) else ""
        console.print(f"[bold]The first e-mail's text part[/] ({first['To']}):")
        console.print(text.strip(), highlight=False, markup=False)
    counts = await outbox_counts(factory)
    console.print(
        f"outbox: {counts.sent} sent, {counts.pending} pending, {counts.dead} dead "
        "(`dotmac-bl notifications relay --smtp-url smtp://HOST:PORT` delivers the rest)",
        highlight=False,
    )
    return {"sent": relayed.sent, "received": len(received), **counts.as_dict()}


def _print_report(report: dict[str, Any], console: Console) -> None:
    if "invoices" in report:
        print_report(report, console)
