"""``dotmac-bl notifications relay`` and ``status``: counts, delivery, clear refusals."""

from __future__ import annotations

import asyncio
import json

from dotmac_shared.business_logic.cli import app
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from tests.cli.helpers import flat, one_error_line
from tests.operations.notifications.support import (
    ScriptedSmtp,
    WebhookReceiver,
    invoice_notice,
    queue,
)


def _queue(url: str, *notices) -> None:
    async def run() -> None:
        factory = create_session_factory(url)
        try:
            await queue(factory, notices)
        finally:
            await engine_of(factory).dispose()

    asyncio.run(run())


def test_relay_once_delivers_pending_notices_and_status_counts_them_when_run(runner, db_url):
    _queue(db_url, invoice_notice(1), invoice_notice(2), invoice_notice(3, channel="webhook"))
    url = ["--database-url", db_url]
    before = runner.invoke(app, ["notifications", "status", "--json", *url])
    assert json.loads(before.stdout) == {"pending": 3, "retrying": 0, "sent": 0, "dead": 0}

    receiver = WebhookReceiver([422])
    with ScriptedSmtp() as smtp, receiver.running():
        relayed = runner.invoke(
            app,
            ["notifications", "relay", "--once", "--smtp-url", smtp.url]
            + ["--webhook-url", receiver.url, "--webhook-secret", "s3cret", *url],
        )
    assert relayed.exit_code == 0, relayed.output
    assert flat(relayed.stdout) == "relayed: 2 sent, 0 to retry, 1 dead"
    assert sorted(str(m["To"]) for m in smtp.messages) == [
        "cust_00001@example.com",
        "cust_00002@example.com",
    ]
    shown = runner.invoke(app, ["notifications", "status", *url])
    assert shown.exit_code == 0
    assert "pending" in shown.stdout and "│ 0 │ 0 │ 2 │ 1 │" in flat(shown.stdout).replace(
        "  ", " "
    )


def test_relay_is_refused_with_a_usage_error_when_it_has_nowhere_to_deliver(runner, db_url):
    result = runner.invoke(app, ["notifications", "relay", "--once", "--database-url", db_url])
    assert result.exit_code == 2
    assert "give --smtp-url and/or --webhook-url" in one_error_line(result.stderr)


def test_relay_is_refused_with_one_line_when_a_url_or_secret_is_wrong(runner, db_url):
    bad_url = runner.invoke(
        app,
        ["notifications", "relay", "--once", "--smtp-url", "mail.example.com:25"]
        + ["--database-url", db_url],
    )
    assert bad_url.exit_code == 1
    assert "SMTP URL must look like smtp://host:port" in one_error_line(bad_url.stderr)
    no_secret = runner.invoke(
        app,
        ["notifications", "relay", "--once", "--webhook-url", "http://127.0.0.1:9/x"]
        + ["--database-url", db_url],
        env={"DOTMAC_WEBHOOK_SECRET": ""},
    )
    assert no_secret.exit_code == 1
    assert "--webhook-url needs --webhook-secret" in one_error_line(no_secret.stderr)


def test_status_is_refused_when_the_sqlite_database_does_not_exist(runner, tmp_path):
    missing = f"sqlite:///{tmp_path / 'nope.db'}"
    result = runner.invoke(app, ["notifications", "status", "--database-url", missing])
    assert result.exit_code == 1
    assert "no database at" in one_error_line(result.stderr)
    assert not (tmp_path / "nope.db").exists()
