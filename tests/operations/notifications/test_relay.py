"""The relay against real receivers on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.engine import make_url

from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.operations.models import OutboxMessage
from dotmac_shared.business_logic.operations.notifications import (
    Backoff,
    NotificationRelay,
    OutgoingNotice,
    SmtpTransport,
    WebhookTransport,
    message_id_for,
    outbox_counts,
    verify_webhook_signature,
)
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from tests.operations.notifications.support import (
    ScriptedSmtp,
    WebhookReceiver,
    invoice_notice,
    queue,
    text_of,
)
from tests.support.tcp_proxy import TcpProxy
from tests.support.telemetry import metric_reader_installed

BACKOFF = Backoff(base=60, cap=600)
SECRET = "whsec_test"


async def rows(factory) -> dict[str, OutboxMessage]:
    async with factory() as session:
        found = (await session.execute(select(OutboxMessage))).scalars().all()
        return {row.dedupe_key: row for row in found}


def relay_for(factory, *transports, clock, **options) -> NotificationRelay:
    options.setdefault("backoff", BACKOFF)
    return NotificationRelay(factory, transports, clock=clock, **options)


async def test_pending_notices_arrive_by_smtp_with_their_dedupe_key_as_message_id_when_relayed(
    session_factory,
):
    await queue(session_factory, [invoice_notice(n) for n in range(7)])
    clock = ManualClock()
    with ScriptedSmtp() as smtp:
        relay = relay_for(session_factory, SmtpTransport(smtp.url), clock=clock, batch_size=3)
        batch = await relay.relay_batch()
        report = await relay.run_once()
        await relay.aclose()

    assert (batch.claimed, batch.sent) == (3, 3)  # a batch is bounded by batch_size
    assert (report.claimed, report.sent) == (4, 4)
    first = smtp.messages[0]
    expected_id = message_id_for("inv_00000:issued", "dotmac.localhost")
    assert str(first["Message-ID"]).strip() == expected_id
    assert (first["To"], first["Subject"]) == (
        "cust_00000@example.com",
        "Your invoice inv_00000 for 2026-10",
    )
    assert "Total: 49.99" in text_of(first)
    assert sorted(str(m["To"]) for m in smtp.messages) == [
        f"cust_{n:05d}@example.com" for n in range(7)
    ]
    stored = await rows(session_factory)
    assert {(r.status, r.attempts, r.sent_at) for r in stored.values()} == {
        ("sent", 1, clock.now())
    }
    counts = await outbox_counts(session_factory)
    assert (counts.pending, counts.sent, counts.dead) == (0, 7, 0)


async def test_transient_smtp_failure_is_retried_after_the_backoff_when_the_clock_moves(
    session_factory,
):
    await queue(session_factory, [invoice_notice(1)])
    clock = ManualClock()
    with ScriptedSmtp(["451 4.3.0 mailbox busy", "451 4.3.0 mailbox busy"]) as smtp:
        relay = relay_for(session_factory, SmtpTransport(smtp.url), clock=clock)
        first = await relay.run_once()
        row = (await rows(session_factory))["inv_00001:issued"]
        assert (first.retried, row.status, row.last_error_code) == (1, "pending", "smtp_451")
        assert row.next_attempt_at == clock.now() + dt.timedelta(seconds=60)

        clock.advance(seconds=59)
        assert (await relay.run_once()).claimed == 0  # not due yet
        clock.advance(seconds=1)
        second = await relay.run_once()  # 451 again: the pause doubles
        row = (await rows(session_factory))["inv_00001:issued"]
        assert (second.retried, row.attempts) == (1, 2)
        assert row.next_attempt_at == clock.now() + dt.timedelta(seconds=120)

        clock.advance(seconds=120)
        third = await relay.run_once()
        await relay.aclose()

    assert third.sent == 1
    assert smtp.answered == ["451 4.3.0 mailbox busy", "451 4.3.0 mailbox busy", "250 OK"]
    assert len(smtp.messages) == 1
    assert (await rows(session_factory))["inv_00001:issued"].status == "sent"


async def test_permanent_smtp_refusal_goes_to_the_dead_letter_at_once_when_answered_5xx(
    session_factory,
):
    await queue(session_factory, [invoice_notice(1), invoice_notice(2)])
    clock = ManualClock()
    with ScriptedSmtp(["550 5.1.1 no such user"]) as smtp:
        relay = relay_for(session_factory, SmtpTransport(smtp.url), clock=clock)
        report = await relay.run_once()
        await relay.aclose()

    assert (report.dead, report.sent) == (1, 1)
    dead = (await rows(session_factory))["inv_00001:issued"]
    assert (dead.status, dead.attempts, dead.last_error_code) == ("dead", 1, "smtp_550")
    assert "550" in dead.last_error and "no such user" in dead.last_error
    counts = await outbox_counts(session_factory)
    assert (counts.pending, counts.sent, counts.dead) == (0, 1, 1)


async def test_transient_failures_go_to_the_dead_letter_when_the_attempts_run_out(
    session_factory,
):
    await queue(session_factory, [invoice_notice(1)])
    clock = ManualClock()
    with ScriptedSmtp(["421 4.7.0 try later"] * 3) as smtp:
        relay = relay_for(session_factory, SmtpTransport(smtp.url), clock=clock, max_attempts=3)
        for _ in range(3):
            await relay.run_once()
            clock.advance(seconds=600)
        await relay.aclose()

    row = (await rows(session_factory))["inv_00001:issued"]
    assert (row.status, row.attempts, row.last_error_code) == ("dead", 3, "smtp_421")
    assert smtp.messages == []


async def test_unreachable_smtp_server_is_a_transient_failure_when_nothing_listens(
    session_factory,
):
    await queue(session_factory, [invoice_notice(1)])
    server = ScriptedSmtp()
    url = server.url  # a free port, nothing listening yet
    clock = ManualClock()
    relay = relay_for(session_factory, SmtpTransport(url, timeout=5), clock=clock)
    refused = await relay.run_once()
    assert (refused.retried, (await rows(session_factory))["inv_00001:issued"].last_error_code) == (
        1,
        "connect",
    )
    with server:  # the server comes up; the retry is due after the backoff
        clock.advance(seconds=60)
        delivered = await relay.run_once()
        await relay.aclose()
    assert delivered.sent == 1 and len(server.messages) == 1


async def test_webhook_is_delivered_once_the_receiver_recovers_when_it_answered_500_thrice(
    session_factory,
):
    await queue(session_factory, [invoice_notice(1, channel="webhook")])
    clock = ManualClock()
    receiver = WebhookReceiver([500, 500, 500, 200])
    with receiver.running():
        relay = relay_for(
            session_factory, WebhookTransport(receiver.url, secret=SECRET, clock=clock), clock=clock
        )
        reports = [await relay.run_once()]
        for _ in range(3):
            clock.advance(seconds=600)
            reports.append(await relay.run_once())
        await relay.aclose()

    assert [r.retried for r in reports] == [1, 1, 1, 0]
    assert reports[-1].sent == 1
    assert [status for status, _, _ in receiver.requests] == [500, 500, 500, 200]
    ids = {headers["x-dotmac-webhook-id"] for _, headers, _ in receiver.requests}
    assert ids == {"inv_00001:issued"}  # the same id on every retry: receivers can dedupe
    _, headers, body = receiver.requests[-1]
    verify_webhook_signature(SECRET, body, headers["x-dotmac-signature"], clock=clock)
    with pytest.raises(InvalidInputError, match="does not match"):
        verify_webhook_signature("other", body, headers["x-dotmac-signature"], clock=clock)
    row = (await rows(session_factory))["inv_00001:issued"]
    assert (row.status, row.attempts) == ("sent", 4)


async def test_webhook_goes_to_the_dead_letter_when_the_receiver_answers_a_permanent_4xx(
    session_factory,
):
    await queue(session_factory, [invoice_notice(1, channel="webhook")])
    receiver = WebhookReceiver([404])
    with receiver.running():
        relay = relay_for(
            session_factory, WebhookTransport(receiver.url, secret=SECRET), clock=ManualClock()
        )
        report = await relay.run_once()
        await relay.aclose()

    assert report.dead == 1 and len(receiver.requests) == 1
    row = (await rows(session_factory))["inv_00001:issued"]
    assert (row.status, row.last_error_code) == ("dead", "http_404")


async def test_notices_of_a_channel_without_a_transport_stay_pending_when_relayed(
    session_factory,
):
    await queue(session_factory, [invoice_notice(1, channel="webhook"), invoice_notice(2)])
    with ScriptedSmtp() as smtp:
        relay = relay_for(session_factory, SmtpTransport(smtp.url), clock=ManualClock())
        report = await relay.run_once()
        await relay.aclose()
    assert report.sent == 1
    assert (await rows(session_factory))["inv_00001:issued"].status == "pending"


class _TakenOver:
    """A transport whose delivery outlasts the relay's lease: another relay takes over."""

    channel = "email"

    def __init__(self, clock: ManualClock, other: NotificationRelay) -> None:
        self.clock, self.other, self.delivered = clock, other, []
        self.other_report = None

    async def deliver(self, notice: OutgoingNotice) -> None:
        self.delivered.append(notice.dedupe_key)
        if self.other_report is None:
            self.clock.advance(seconds=121)  # the first relay's lease has run out...
            self.other_report = await self.other.run_once()  # ...and the second claims it

    async def aclose(self) -> None:
        pass


async def test_outcome_of_a_relay_is_not_recorded_when_its_lease_was_taken_over(
    session_factory,
):
    await queue(session_factory, [invoice_notice(1)])
    clock = ManualClock()
    with ScriptedSmtp(["451 4.3.0 busy"]) as smtp:
        second = relay_for(session_factory, SmtpTransport(smtp.url), clock=clock)
        transport = _TakenOver(clock, second)
        first = relay_for(session_factory, transport, clock=clock, lease=120, delivery_timeout=10)
        report = await first.run_once()
        await second.aclose()

    # The second relay's outcome (a retry after 451) stands; the first's "sent" is dropped.
    assert (report.sent, report.lost) == (0, 1)
    assert transport.other_report.retried == 1
    row = (await rows(session_factory))["inv_00001:issued"]
    assert (row.status, row.attempts, row.last_error_code) == ("pending", 2, "smtp_451")


class _SlowClock:
    """A transport that moves the clock on by ``step`` seconds per delivery."""

    channel = "email"

    def __init__(self, clock: ManualClock, step: float) -> None:
        self.clock, self.step, self.delivered = clock, step, []

    async def deliver(self, notice: OutgoingNotice) -> None:
        self.delivered.append(notice.dedupe_key)
        self.clock.advance(seconds=self.step)

    async def aclose(self) -> None:
        pass


async def test_rest_of_a_batch_is_released_unsent_when_its_lease_is_about_to_end(
    session_factory,
):
    await queue(session_factory, [invoice_notice(n) for n in range(5)])
    clock = ManualClock()
    transport = _SlowClock(clock, step=40)
    relay = relay_for(session_factory, transport, clock=clock, lease=120, delivery_timeout=30)

    report = await relay.relay_batch()

    # 0 s, 40 s, 80 s: sent; at 120 s the lease is over (<= 30 s left): 2 released.
    assert (report.sent, report.released) == (3, 2)
    released = [r for r in (await rows(session_factory)).values() if r.status == "pending"]
    assert {(r.attempts, r.claimed_by, r.next_attempt_at) for r in released} == {(0, None, None)}
    assert (await relay.run_once()).sent == 2  # due at once, not after a lease


async def test_killed_relays_claim_is_delivered_again_when_its_lease_has_run_out(
    session_factory,
):
    await queue(session_factory, [invoice_notice(n) for n in range(3)])
    clock = ManualClock()
    with ScriptedSmtp() as smtp:
        dead_relay = relay_for(session_factory, SmtpTransport(smtp.url), clock=clock)
        _, claimed = await dead_relay._claim()  # claimed, then the relay "dies"
        assert len(claimed) == 3
        other = relay_for(session_factory, SmtpTransport(smtp.url), clock=clock)
        assert (await other.run_once()).claimed == 0  # leased: not taken
        clock.advance(seconds=120)
        report = await other.run_once()
        await other.aclose()
    assert report.sent == 3
    assert {r.attempts for r in (await rows(session_factory)).values()} == {2}


def test_relay_refuses_settings_that_cannot_work_when_constructed():
    transport = SmtpTransport("smtp://127.0.0.1:2525")
    with pytest.raises(InvalidInputError, match="delivery_timeout < lease"):
        NotificationRelay(None, [transport], lease=10, delivery_timeout=30)
    with pytest.raises(InvalidInputError, match="two transports"):
        NotificationRelay(None, [transport, SmtpTransport("smtp://127.0.0.1:2526")])
    with pytest.raises(InvalidInputError, match="at least one transport"):
        NotificationRelay(None, [])
    with pytest.raises(InvalidInputError, match="smtp://host:port"):
        SmtpTransport("http://127.0.0.1")
    with pytest.raises(InvalidInputError, match="secret"):
        WebhookTransport("http://127.0.0.1/x", secret="")


async def _until(predicate, seconds: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting for progress"
        await asyncio.sleep(0.02)


@pytest.mark.reliability
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_running_relay_survives_the_database_connection_dropping_when_it_comes_back(
    session_factory, database_url, caplog
):
    url = make_url(database_url)
    proxy = await TcpProxy.start(url.host or "127.0.0.1", url.port or 5432)
    relay_factory = create_session_factory(
        url.set(port=proxy.port).render_as_string(hide_password=False), migrate=False
    )
    stop = asyncio.Event()
    with ScriptedSmtp() as smtp:
        relay = NotificationRelay(
            relay_factory, [SmtpTransport(smtp.url)], poll_interval=0.05, max_backoff=0.2
        )
        running = asyncio.create_task(relay.run(stop))
        try:
            await queue(session_factory, [invoice_notice(1)])
            await _until(lambda: len(smtp.messages) == 1)
            while (await rows(session_factory))["inv_00001:issued"].status != "sent":
                await asyncio.sleep(0.02)  # recorded too (else its lease would hold it back)
            await proxy.cut()  # the relay's connections drop; new ones are refused
            await queue(session_factory, [invoice_notice(2)])
            await _until(lambda: "notification relay pass failed" in caplog.text)
            await proxy.restore()
            await _until(lambda: len(smtp.messages) == 2)
        finally:
            stop.set()
            report = await asyncio.wait_for(running, 10)
            await relay.aclose()
            await proxy.close()
            await engine_of(relay_factory).dispose()

    assert report.sent == 2 and running.exception() is None
    assert {r.status for r in (await rows(session_factory)).values()} == {"sent"}


async def test_outcomes_are_counted_by_the_relayed_metric_when_recorded(session_factory):
    await queue(session_factory, [invoice_notice(1), invoice_notice(2)])
    with metric_reader_installed() as reader, ScriptedSmtp(["550 5.1.1 no such user"]) as smtp:
        relay = relay_for(session_factory, SmtpTransport(smtp.url), clock=ManualClock())
        await relay.run_once()
        await relay.aclose()
        data = reader.get_metrics_data()
    points = {
        point.attributes["outcome"]: point.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        if metric.name == "dotmac.notifications.relayed"
        for point in metric.data.data_points
    }
    assert points == {"dead": 1, "sent": 1}


class _Broken:
    channel = "email"

    async def deliver(self, notice: OutgoingNotice) -> None:
        raise KeyError("a bug in a custom transport")

    async def aclose(self) -> None:
        pass


async def test_transport_bug_is_recorded_as_a_transient_failure_when_it_raises(session_factory):
    await queue(session_factory, [invoice_notice(1)])
    report = await relay_for(session_factory, _Broken(), clock=ManualClock()).run_once()
    row = (await rows(session_factory))["inv_00001:issued"]
    assert report.retried == 1
    assert (row.last_error_code, row.status) == ("transport_error", "pending")
    assert "KeyError" in row.last_error
