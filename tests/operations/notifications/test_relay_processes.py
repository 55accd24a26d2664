"""Relays as real processes: one killed mid-batch and restarted, two racing on one outbox."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select, update

from dotmac_shared.business_logic.clock import SYSTEM_CLOCK
from dotmac_shared.business_logic.operations.models import OutboxMessage
from dotmac_shared.business_logic.operations.notifications import message_id_for
from tests.operations.notifications.support import ScriptedSmtp, invoice_notice, queue

pytestmark = pytest.mark.reliability

CLI = [sys.executable, "-c", "from dotmac_shared.business_logic.cli import main; main()"]


def relay_process(url: str, smtp_url: str, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, "notifications", "relay", "--database-url", url, "--smtp-url", smtp_url]
        + ["--once", "--json", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )


def finished(process: subprocess.Popen[bytes]) -> dict[str, int]:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err.decode()
    return json.loads(out.decode().strip().splitlines()[-1])


async def statuses(factory) -> dict[str, int]:
    async with factory() as session:
        found = await session.execute(
            select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)
        )
        return dict(found.all())


async def test_killed_relay_loses_no_notice_and_repeats_carry_the_same_message_id_when_restarted(
    session_factory, database_url
):
    count = 40
    await queue(session_factory, [invoice_notice(n) for n in range(count)])
    with ScriptedSmtp() as smtp:
        smtp.hold_from = 15  # the 15th e-mail stalls: the relay is mid-way through batch 2
        first = relay_process(database_url, smtp.url, "--batch-size", "10")
        deadline = time.monotonic() + 60
        while len(smtp.messages) < 15:
            assert first.poll() is None and time.monotonic() < deadline, "relay stalled"
            await asyncio.sleep(0.01)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=30)  # reaps it and closes its pipes
        smtp.released.set()

        async with session_factory() as session, session.begin():
            # The killed relay's lease ends; move it into the past instead of waiting.
            expired = await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.status == "pending", OutboxMessage.claimed_by.is_not(None))
                .values(next_attempt_at=SYSTEM_CLOCK.now())
                .returning(OutboxMessage.id)
            )
            assert expired.all(), "the killed relay held no claim"
        second = finished(relay_process(database_url, smtp.url, "--batch-size", "10"))

    assert await statuses(session_factory) == {"sent": count}
    by_recipient = collections.defaultdict(set)
    for message in smtp.messages:
        by_recipient[str(message["To"])].add(str(message["Message-ID"]).strip())
    assert len(by_recipient) == count  # every notice arrived
    expected = {
        f"cust_{n:05d}@example.com": {message_id_for(f"inv_{n:05d}:issued", "dotmac.localhost")}
        for n in range(count)
    }
    assert by_recipient == expected  # and each repeat carried its notice's one Message-ID
    assert len(smtp.messages) > count, "the kill left no delivered-but-unrecorded notice"
    # Outcomes are recorded per batch: only the killed batch's delivered notices repeat.
    recorded_before_kill = count - second["sent"]
    assert recorded_before_kill == 10  # batch 1, recorded before batch 2 was claimed
    assert len(smtp.messages) - count == 5  # batch 2's five, received before the kill


async def test_racing_relays_never_deliver_one_notice_twice_at_once_when_sharing_the_outbox(
    session_factory, database_url
):
    count = 60
    await queue(session_factory, [invoice_notice(n) for n in range(count)])
    with ScriptedSmtp(delay=0.01, gate_clients=2) as smtp:
        relays = [relay_process(database_url, smtp.url, "--batch-size", "5") for _ in range(2)]
        reports = [finished(process) for process in relays]

    assert all(report["sent"] > 0 for report in reports), reports  # both really worked
    assert sum(report["sent"] for report in reports) == count
    assert max(smtp.max_in_flight.values()) == 1
    ids = smtp.message_ids()
    assert len(ids) == len(set(ids)) == count  # no lease ran out: exactly once
    assert await statuses(session_factory) == {"sent": count}


async def test_relay_command_delivers_until_sigterm_when_run_without_once(
    session_factory, database_url
):
    with ScriptedSmtp() as smtp:
        process = subprocess.Popen(
            [*CLI, "notifications", "relay", "--database-url", database_url]
            + ["--smtp-url", smtp.url, "--poll-interval", "0.05"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "COLUMNS": "200"},
        )
        await queue(session_factory, [invoice_notice(1)])
        deadline = time.monotonic() + 60
        while len(smtp.messages) < 1:
            assert process.poll() is None and time.monotonic() < deadline, "nothing relayed"
            await asyncio.sleep(0.02)
        await queue(session_factory, [invoice_notice(2)])  # found by a later poll
        while len(smtp.messages) < 2:
            assert process.poll() is None and time.monotonic() < deadline, "no second pass"
            await asyncio.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)

    assert process.returncode == 0, err.decode()
    assert "relay stopped: 2 sent" in " ".join(out.decode().split())
