"""``dotmac-bl notifications``: relay the outbox by SMTP and webhooks; show its counts."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Annotated

import typer
from rich.table import Table

from dotmac_shared.business_logic.cli._output import (
    DatabaseUrl,
    console,
    fail,
    run_async,
    session_factory,
)
from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.operations.notifications import (
    DEFAULT_SENDER,
    Backoff,
    NotificationRelay,
    RelayReport,
    SmtpTransport,
    Transport,
    WebhookTransport,
    outbox_counts,
)

__all__ = ["notifications_app"]

notifications_app = typer.Typer(
    no_args_is_help=True,
    help="The notification outbox: deliver it (relay) and count it (status).",
)

AsJson = Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")]


def _transports(
    smtp_url: str | None, sender: str, webhook_url: str | None, webhook_secret: str | None
) -> list[Transport]:
    transports: list[Transport] = []
    if smtp_url:
        transports.append(SmtpTransport(smtp_url, sender=sender))
    if webhook_url:
        if not webhook_secret:
            raise InvalidInputError(
                "--webhook-url needs --webhook-secret (or $DOTMAC_WEBHOOK_SECRET) to sign with",
                field="webhook_secret",
            )
        transports.append(WebhookTransport(webhook_url, secret=webhook_secret))
    if not transports:
        fail("give --smtp-url and/or --webhook-url: the relay needs somewhere to deliver", code=2)
    return transports


def _print_report(report: RelayReport, *, as_json: bool, prefix: str) -> None:
    if as_json:
        typer.echo(json.dumps(report.as_dict()))
        return
    console.print(
        f"{prefix}: {report.sent} sent, {report.retried} to retry, {report.dead} dead"
        + (f", {report.released} released" if report.released else "")
        + (f", {report.lost} taken over by another relay" if report.lost else ""),
        highlight=False,
    )


@notifications_app.command("relay")
def relay(
    smtp_url: Annotated[
        str | None,
        typer.Option(
            "--smtp-url",
            envvar="DOTMAC_SMTP_URL",
            help="Deliver e-mail notices here: smtp://[user:password@]host:port or smtps://...",
        ),
    ] = None,
    sender: Annotated[str, typer.Option("--sender", help="The e-mails' From.")] = DEFAULT_SENDER,
    webhook_url: Annotated[
        str | None,
        typer.Option("--webhook-url", help="POST webhook notices here, signed (HMAC-SHA256)."),
    ] = None,
    webhook_secret: Annotated[
        str | None,
        typer.Option(
            "--webhook-secret",
            envvar="DOTMAC_WEBHOOK_SECRET",
            help="The webhook signing secret (prefer the environment variable).",
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option("--once", help="Deliver what is due now, print the counts, exit.")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Notices claimed per pass.")] = 50,
    lease_seconds: Annotated[
        float,
        typer.Option(min=1.0, help="Seconds a claim lasts (a killed relay's notices wait this)."),
    ] = 120.0,
    delivery_timeout: Annotated[
        float, typer.Option(min=0.1, help="Most seconds one delivery may take.")
    ] = 30.0,
    max_attempts: Annotated[
        int, typer.Option(min=1, help="Attempts before a failing notice goes to the dead letter.")
    ] = 8,
    retry_base: Annotated[
        float, typer.Option(min=0.001, help="Seconds before the 2nd attempt (then doubling).")
    ] = 30.0,
    retry_max: Annotated[float, typer.Option(min=0.001, help="Longest retry pause (s).")] = 3600.0,
    poll_interval: Annotated[
        float, typer.Option(min=0.01, help="Seconds to wait when nothing was due.")
    ] = 1.0,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Deliver queued notifications (e-mail by SMTP, signed webhooks) until SIGINT/SIGTERM.

    Delivery is at least once: a notice's dedupe key is its Message-ID and its
    X-Dotmac-Webhook-Id, so receivers can drop a repeat. Several relays may share one
    PostgreSQL outbox. A pass that fails (the database is unreachable) is logged and retried.
    """

    async def work() -> RelayReport:
        transports = _transports(smtp_url, sender, webhook_url, webhook_secret)
        async with session_factory(database_url) as factory:
            notification_relay = NotificationRelay(
                factory,
                transports,
                max_attempts=max_attempts,
                batch_size=batch_size,
                lease=lease_seconds,
                delivery_timeout=delivery_timeout,
                backoff=Backoff(base=retry_base, cap=max(retry_base, retry_max)),
                poll_interval=poll_interval,
            )
            try:
                if once:
                    return await notification_relay.run_once()
                stop = asyncio.Event()
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                if not as_json:
                    console.print(
                        f"relay {notification_relay.relay_id} started "
                        f"({', '.join(map(repr, transports))}); stop with Ctrl-C or SIGTERM",
                        soft_wrap=True,
                        highlight=False,
                    )
                return await notification_relay.run(stop)
            finally:
                await notification_relay.aclose()

    report = run_async(work())
    _print_report(report, as_json=as_json, prefix="relayed" if once else "relay stopped")


@notifications_app.command("status")
def status(as_json: AsJson = False, database_url: DatabaseUrl = None) -> None:
    """Count the outbox's notices: pending (and of those, retrying), sent, dead."""

    async def work() -> dict[str, int]:
        async with session_factory(database_url, must_exist=True) as factory:
            return (await outbox_counts(factory)).as_dict()

    counts = run_async(work())
    if as_json:
        typer.echo(json.dumps(counts))
        return
    table = Table(title="Notification outbox")
    for column in counts:
        table.add_column(column, justify="right")
    table.add_row(*(str(value) for value in counts.values()))
    console.print(table)
