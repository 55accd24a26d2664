"""What to do with a message after a delivery attempt: pure logic, no I/O.

A delivery either succeeds (``sent``), fails transiently (retry after an exponential
backoff, until the attempts run out) or fails permanently (the dead letter at once). Which
server answers are transient is decided here too, so both transports and their tests share
one table.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum

from dotmac_shared.business_logic.exceptions import InvalidInputError, NotificationDeliveryError

__all__ = [
    "Backoff",
    "Dead",
    "OutboxStatus",
    "Retry",
    "Sent",
    "Verdict",
    "decide",
    "http_status_is_transient",
    "smtp_code_is_transient",
]


class OutboxStatus(enum.StrEnum):
    """Where an outbox row is in its life."""

    #: Waiting for a (first or further) delivery attempt, or being delivered under a lease.
    PENDING = "pending"
    #: Delivered: a server accepted it (at least once).
    SENT = "sent"
    #: Given up: a permanent failure, or the attempts ran out; ``last_error`` says why.
    DEAD = "dead"


@dataclasses.dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff between attempts: ``base * 2**(attempt-1)``, capped at ``cap``.

    Args:
        base: Seconds before the second attempt.
        cap: The longest pause in seconds.

    Example:
        >>> [Backoff(base=30, cap=100).delay(n).total_seconds() for n in (1, 2, 3, 4)]
        [30.0, 60.0, 100.0, 100.0]
    """

    base: float = 30.0
    cap: float = 3600.0

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise InvalidInputError(
                f"backoff needs 0 < base <= cap, got base={self.base} cap={self.cap}",
                field="backoff",
            )

    def delay(self, attempt: int) -> dt.timedelta:
        """The pause after failed attempt number ``attempt`` (1 for the first)."""
        exponent = min(max(attempt, 1) - 1, 62)  # no float overflow for absurd counts
        return dt.timedelta(seconds=min(self.cap, self.base * 2.0**exponent))


@dataclasses.dataclass(frozen=True, slots=True)
class Sent:
    """The message was delivered."""


@dataclasses.dataclass(frozen=True, slots=True)
class Retry:
    """Try again at ``at``; ``error`` was this attempt's failure."""

    at: dt.datetime
    error: NotificationDeliveryError


@dataclasses.dataclass(frozen=True, slots=True)
class Dead:
    """Give up: ``error`` was the last failure."""

    error: NotificationDeliveryError


Verdict = Sent | Retry | Dead


def decide(
    error: NotificationDeliveryError | None,
    *,
    attempts: int,
    max_attempts: int,
    now: dt.datetime,
    backoff: Backoff,
) -> Verdict:
    """The verdict on attempt number ``attempts`` whose failure was ``error`` (``None``: ok).

    Example:
        >>> import datetime as dt
        >>> now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
        >>> flaky = NotificationDeliveryError("503", transient=True, reason="http_503")
        >>> decide(flaky, attempts=1, max_attempts=3, now=now, backoff=Backoff()).at - now
        datetime.timedelta(seconds=30)
        >>> type(decide(flaky, attempts=3, max_attempts=3, now=now, backoff=Backoff())).__name__
        'Dead'
    """
    if error is None:
        return Sent()
    if not error.transient or attempts >= max_attempts:
        return Dead(error)
    return Retry(now + backoff.delay(attempts), error)


def smtp_code_is_transient(code: int) -> bool:
    """An SMTP reply of 4xx is transient (try later); 5xx is permanent (RFC 5321 4.2.1)."""
    return 400 <= code < 500


def http_status_is_transient(status: int) -> bool:
    """HTTP 5xx, 408 (timeout) and 429 (slow down) are transient; other 4xx are permanent."""
    return status >= 500 or status in (408, 429)
