"""The outbox relay: claims due notices, delivers them, records the outcome.

One pass (:meth:`NotificationRelay.relay_batch`):

1. **Claim** (one short transaction, one statement): the oldest due ``pending`` rows of
   the channels this relay has transports for get ``claimed_by = <this relay>``,
   ``next_attempt_at = now + lease`` and ``attempts + 1``. On PostgreSQL the candidate rows
   are read ``FOR UPDATE SKIP LOCKED``, so relays sharing the outbox claim disjoint rows
   without waiting on each other; SQLite has one writer at a time and the single
   ``UPDATE ... RETURNING`` is atomic.
2. **Deliver** outside any transaction, one notice at a time, each bounded by a timeout
   shorter than the lease. A notice whose lease would end before its delivery could is
   released, not sent: a lease that runs out while its holder still sends would let a
   second relay send the same notice at the same time.
3. **Record** each outcome (sent; retry at ``now + backoff``; dead with the last error),
   guarded by ``claimed_by``: a relay whose lease was taken over changes nothing.

A relay killed between 2 and 3 leaves its rows claimed until the lease ends; then they are
due again and another relay sends them again: delivery is at least once, and the repeat
carries the same ``Message-ID`` / webhook id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.clock import Clock, as_clock
from dotmac_shared.business_logic.exceptions import InvalidInputError, NotificationDeliveryError
from dotmac_shared.business_logic.observability._log import get_logger
from dotmac_shared.business_logic.observability._telemetry import NOTIFICATIONS_RELAYED
from dotmac_shared.business_logic.operations.models import OutboxMessage
from dotmac_shared.business_logic.operations.notifications._decide import (
    Backoff,
    Dead,
    OutboxStatus,
    Retry,
    Sent,
    Verdict,
    decide,
)
from dotmac_shared.business_logic.operations.notifications._transport import (
    OutgoingNotice,
    Transport,
)

__all__ = ["NotificationRelay", "OutboxCounts", "RelayReport", "outbox_counts"]

logger = get_logger(__name__)

_M = OutboxMessage
_PENDING = OutboxStatus.PENDING.value
_LAST_ERROR_CHARS = 2000
_OUTCOMES: dict[type[Any], str] = {Sent: "sent", Retry: "retry", Dead: "dead"}


@dataclasses.dataclass(slots=True)
class RelayReport:
    """What one or more passes did.

    Attributes:
        claimed: Notices claimed.
        sent: Delivered and marked sent.
        retried: Failed transiently; scheduled again.
        dead: Moved to the dead letter.
        released: Given back unsent (the lease was about to end).
        lost: Outcomes not recorded because another relay had taken the notice over.
    """

    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    released: int = 0
    lost: int = 0

    def add(self, other: RelayReport) -> None:
        """Add ``other``'s counts to this report."""
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict (for ``--json``)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class OutboxCounts:
    """How many notices are in each state (``dotmac-bl notifications status``).

    Attributes:
        pending: Not delivered yet (including those scheduled for a retry).
        retrying: Of ``pending``, those attempted before (a failure, or a relay that died).
        sent: Delivered.
        dead: Given up on (the dead letter).
    """

    pending: int
    retrying: int
    sent: int
    dead: int

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict (for ``--json``)."""
        return dataclasses.asdict(self)


async def outbox_counts(session_factory: async_sessionmaker[AsyncSession]) -> OutboxCounts:
    """Count the outbox's notices by state, in one query."""
    async with session_factory() as session:
        rows = (
            await session.execute(
                select(
                    _M.status, func.count(), func.sum(case((_M.attempts > 0, 1), else_=0))
                ).group_by(_M.status)
            )
        ).all()
    counts = {status: count for status, count, _ in rows}
    retrying = next((int(tried or 0) for status, _, tried in rows if status == _PENDING), 0)
    return OutboxCounts(
        pending=counts.get(_PENDING, 0),
        retrying=retrying,
        sent=counts.get(OutboxStatus.SENT.value, 0),
        dead=counts.get(OutboxStatus.DEAD.value, 0),
    )


class NotificationRelay:
    """Delivers the notification outbox's notices through transports, at least once.

    Args:
        session_factory: The database holding ``dotmac_notification_outbox``.
        transports: One transport per channel (``SmtpTransport`` for ``"email"``,
            ``WebhookTransport`` for ``"webhook"``). Notices of other channels are left
            pending for a relay that has their transport.
        clock: The time source of leases and retry schedules (the system's by default).
        max_attempts: Attempts before a transiently failing notice goes to the dead letter.
        batch_size: Notices claimed per pass.
        lease: Seconds a claim lasts; must exceed ``delivery_timeout``.
        delivery_timeout: Most seconds one delivery may take before it counts as a
            transient failure.
        backoff: Pauses between attempts of one notice.
        poll_interval: Seconds :meth:`run` waits when nothing was due.
        max_backoff: Longest pause of :meth:`run` after failed passes (database down).
        relay_id: This relay's name in ``claimed_by`` (unique by default).

    Raises:
        InvalidInputError: A setting out of range, or two transports for one channel.

    Example:
        >>> relay = NotificationRelay(factory, [SmtpTransport("smtp://127.0.0.1:1025")])
        ... # doctest: +SKIP
        >>> report = await relay.run_once()  # doctest: +SKIP
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        transports: Iterable[Transport],
        *,
        clock: Clock | None = None,
        max_attempts: int = 8,
        batch_size: int = 50,
        lease: float = 120.0,
        delivery_timeout: float = 30.0,
        backoff: Backoff | None = None,
        poll_interval: float = 1.0,
        max_backoff: float = 30.0,
        relay_id: str | None = None,
    ) -> None:
        by_channel: dict[str, Transport] = {}
        for transport in transports:
            if transport.channel in by_channel:
                raise InvalidInputError(
                    f"two transports for channel {transport.channel!r}", field="transports"
                )
            by_channel[transport.channel] = transport
        if not by_channel:
            raise InvalidInputError("a relay needs at least one transport", field="transports")
        if max_attempts < 1:
            raise InvalidInputError("max_attempts must be at least 1", field="max_attempts")
        if batch_size < 1:
            raise InvalidInputError("batch_size must be at least 1", field="batch_size")
        if not 0 < delivery_timeout < lease:
            raise InvalidInputError(
                f"need 0 < delivery_timeout < lease, got {delivery_timeout:g} and {lease:g}",
                field="lease",
            )
        self.session_factory = session_factory
        self.transports: Mapping[str, Transport] = by_channel
        self.clock = as_clock(clock)
        self.max_attempts = max_attempts
        self.batch_size = batch_size
        self.lease = dt.timedelta(seconds=lease)
        self.delivery_timeout = delivery_timeout
        self.backoff = backoff or Backoff()
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.relay_id = relay_id or f"relay-{uuid.uuid4().hex[:12]}"
        self._channels = sorted(by_channel)

    # --- claim ---------------------------------------------------------------------

    async def _claim(self) -> tuple[dt.datetime, list[OutgoingNotice]]:
        now = self.clock.now()
        lease_end = now + self.lease
        is_due = (
            _M.status == _PENDING,
            or_(_M.next_attempt_at.is_(None), _M.next_attempt_at <= now),
        )
        due = (
            select(_M.id)
            .where(*is_due, _M.channel.in_(self._channels))
            .order_by(_M.id)
            .limit(self.batch_size)
            .with_for_update(skip_locked=True)  # PostgreSQL only; SQLite renders no lock
            # Materialized: evaluated once. As a plain ``IN (subquery)`` PostgreSQL may
            # rescan it per row, and each rescan skips the rows just claimed (no longer
            # due), so LIMIT would not bound the batch at all.
            .cte("due")
            .prefix_with("MATERIALIZED")
        )
        claim = (
            update(_M)
            # Due again in the UPDATE itself: should a row be claimed by another relay
            # between the read and the write (SQLite has no row locks), the UPDATE skips
            # it instead of claiming it twice.
            .where(_M.id.in_(select(due.c.id)), *is_due)
            .values(claimed_by=self.relay_id, next_attempt_at=lease_end, attempts=_M.attempts + 1)
            .returning(
                _M.id,
                _M.dedupe_key,
                _M.tenant_id,
                _M.channel,
                _M.recipient,
                _M.template,
                _M.payload,
                _M.created_at,
                _M.attempts.label("attempt"),  # after the increment: this attempt's number
            )
            .execution_options(synchronize_session=False)
        )
        async with self.session_factory() as session, session.begin():
            rows = (await session.execute(claim)).all()
        notices = [OutgoingNotice(**row._mapping) for row in rows]
        notices.sort(key=lambda n: n.id)
        return lease_end, notices

    # --- record ----------------------------------------------------------------------

    def _ours(self, *ids: int) -> Any:
        # Only the latest claimer may record: a relay whose lease ran out and was taken
        # over must not overwrite the new holder's outcome.
        return (
            update(_M)
            .where(_M.id.in_(ids), _M.claimed_by == self.relay_id, _M.status == _PENDING)
            .returning(_M.id)
            .execution_options(synchronize_session=False)
        )

    async def _record(
        self, outcomes: Sequence[tuple[OutgoingNotice, Verdict]], report: RelayReport
    ) -> None:
        """Record a batch's outcomes in one transaction (the sent ones in one statement)."""
        if not outcomes:
            return
        now = self.clock.now()
        sent = [notice.id for notice, verdict in outcomes if isinstance(verdict, Sent)]
        recorded: set[int] = set()
        async with self.session_factory() as session, session.begin():
            if sent:
                statement = self._ours(*sent).values(
                    status=OutboxStatus.SENT.value,
                    sent_at=now,
                    claimed_by=None,
                    next_attempt_at=None,
                )
                recorded.update((await session.execute(statement)).scalars())
            for notice, verdict in outcomes:
                values: dict[str, Any]
                if isinstance(verdict, Retry):
                    values = {"next_attempt_at": verdict.at}
                elif isinstance(verdict, Dead):
                    values = {"status": OutboxStatus.DEAD.value, "next_attempt_at": None}
                else:
                    continue
                statement = self._ours(notice.id).values(
                    claimed_by=None, **values, **_error_values(verdict.error)
                )
                recorded.update((await session.execute(statement)).scalars())
        for notice, verdict in outcomes:
            outcome = _OUTCOMES[type(verdict)] if notice.id in recorded else "lost"
            NOTIFICATIONS_RELAYED.add(1, {"outcome": outcome, "channel": notice.channel})
            if notice.id not in recorded:
                report.lost += 1
                logger.warning(
                    "notice %s (%s) was taken over by another relay; outcome %s not recorded",
                    notice.id,
                    notice.dedupe_key,
                    type(verdict).__name__,
                )
            elif isinstance(verdict, Sent):
                report.sent += 1
            elif isinstance(verdict, Retry):
                report.retried += 1
            else:
                report.dead += 1

    async def _release(self, notices: Sequence[OutgoingNotice]) -> None:
        """Give unsent notices back at once (attempt not counted), if still ours."""
        statement = self._ours(*(n.id for n in notices)).values(
            claimed_by=None, next_attempt_at=None, attempts=_M.attempts - 1
        )
        async with self.session_factory() as session, session.begin():
            await session.execute(statement)

    # --- deliver ---------------------------------------------------------------------

    async def _deliver(self, notice: OutgoingNotice) -> NotificationDeliveryError | None:
        transport = self.transports[notice.channel]
        try:
            async with asyncio.timeout(self.delivery_timeout):
                await transport.deliver(notice)
        except NotificationDeliveryError as exc:
            return exc
        except TimeoutError:
            return NotificationDeliveryError(
                f"delivery took longer than {self.delivery_timeout:g} s",
                transient=True,
                reason="timeout",
            )
        except Exception as exc:  # a transport's bug must not cost the batch its outcomes
            logger.exception("transport %r failed on notice %s", transport, notice.id)
            return NotificationDeliveryError(
                f"transport {transport!r} raised {type(exc).__name__}: {exc}",
                transient=True,
                reason="transport_error",
            )
        return None

    async def relay_batch(self) -> RelayReport:
        """Claim one batch of due notices, deliver them, record their outcomes.

        Outcomes are recorded together when the batch ends (one transaction, not one per
        notice): a relay killed mid-batch sends the batch's delivered notices again later,
        which at-least-once delivery allows and the stable message ids make harmless.
        """
        report = RelayReport()
        lease_end, notices = await self._claim()
        report.claimed = len(notices)
        outcomes: list[tuple[OutgoingNotice, Verdict]] = []
        unsent: list[OutgoingNotice] = []
        for index, notice in enumerate(notices):
            # Stop before a delivery that could outlast the lease (see the module docstring).
            if (lease_end - self.clock.now()).total_seconds() <= self.delivery_timeout:
                unsent = notices[index:]
                break
            error = await self._deliver(notice)
            verdict = decide(
                error,
                attempts=notice.attempt,
                max_attempts=self.max_attempts,
                now=self.clock.now(),
                backoff=self.backoff,
            )
            if isinstance(verdict, Dead | Retry):
                logger.log(
                    logging.ERROR if isinstance(verdict, Dead) else logging.WARNING,
                    "notice %s (%s) attempt %d failed (%s): %s; %s",
                    notice.id,
                    notice.dedupe_key,
                    notice.attempt,
                    verdict.error.reason,
                    verdict.error.message,
                    "dead letter" if isinstance(verdict, Dead) else f"retry at {verdict.at}",
                )
            outcomes.append((notice, verdict))
        await self._record(outcomes, report)
        if unsent:
            await self._release(unsent)
            report.released += len(unsent)
        return report

    async def run_once(self) -> RelayReport:
        """Deliver everything due now (batch after batch), then return what was done.

        A notice scheduled for a later retry, or claimed by another relay, is not waited for.
        """
        report = RelayReport()
        while True:
            batch = await self.relay_batch()
            report.add(batch)
            if batch.claimed < self.batch_size:
                return report

    async def run(self, stop_event: asyncio.Event) -> RelayReport:
        """Relay until ``stop_event`` is set; returns the total report.

        A failed pass (the database unreachable, say) is logged and retried after a pause
        that doubles up to ``max_backoff``: a relay never dies of one database error.
        """
        report = RelayReport()
        failures = 0
        while not stop_event.is_set():
            try:
                batch = await self.run_once()
            except Exception:  # the database may be down: log, wait, try again
                failures += 1
                pause = min(self.max_backoff, self.poll_interval * 2.0 ** (failures - 1))
                logger.exception("notification relay pass failed; next pass in %.2f s", pause)
            else:
                failures = 0
                report.add(batch)
                pause = 0.0 if batch.claimed else self.poll_interval
            if pause:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop_event.wait(), timeout=pause)
        return report

    async def aclose(self) -> None:
        """Close every transport's connections."""
        for transport in self.transports.values():
            await transport.aclose()


def _error_values(error: NotificationDeliveryError) -> dict[str, Any]:
    return {
        "last_error": error.message[:_LAST_ERROR_CHARS],
        "last_error_code": error.reason[:64],
    }
