"""One source of time for leases, expiry and timestamps, injected rather than read from the wall.

Stores, the idempotency manager and the saga coordinator take a :class:`Clock`; production
code uses :data:`SYSTEM_CLOCK`, tests a :class:`ManualClock` they move by hand, so that a lease
expires because the test said so, not because it slept.

Only *wall* time (what is written to records and compared across processes) comes from the
clock. Waiting (``asyncio.sleep``, timeouts, backoff) stays on the event loop's own
monotonic time: a manual clock does not make a coroutine wake up sooner.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ManualClock", "SYSTEM_CLOCK", "SystemClock", "as_clock"]


@runtime_checkable
class Clock(Protocol):
    """A source of timezone-aware UTC time."""

    def now(self) -> dt.datetime:
        """Return the current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The wall clock of this machine, in UTC."""

    def now(self) -> dt.datetime:
        """Return the current time, timezone-aware UTC."""
        return dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        """Return :meth:`now` (a clock is also the plain function older APIs took)."""
        return self.now()

    def __repr__(self) -> str:
        return "SystemClock()"


#: The clock every component uses unless it is given another.
SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that stands still until it is moved: for tests and simulations.

    Args:
        start: Where it starts (aware); the system's current time by default, so that a test
            never depends on a calendar date that will pass.

    Example:
        >>> clock = ManualClock()
        >>> before = clock.now()
        >>> clock.advance(seconds=90)
        >>> (clock.now() - before).total_seconds()
        90.0
    """

    def __init__(self, start: dt.datetime | None = None) -> None:
        if start is not None and (start.tzinfo is None or start.utcoffset() is None):
            raise ValueError("ManualClock needs a timezone-aware start time")
        self._now = (start or SYSTEM_CLOCK.now()).astimezone(dt.UTC)
        # Worker threads (the SQLite driver's) may read it while a test moves it.
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        """Return the clock's current time."""
        with self._lock:
            return self._now

    def __call__(self) -> dt.datetime:
        """Return :meth:`now` (a clock is also the plain function older APIs took)."""
        return self.now()

    def advance(self, seconds: float = 0.0, **delta: float) -> None:
        """Move the clock forward by ``seconds`` (and any ``timedelta`` keywords)."""
        step = dt.timedelta(seconds=seconds, **delta)
        if step < dt.timedelta(0):
            raise ValueError("a clock only moves forward")
        with self._lock:
            self._now += step

    def set(self, when: dt.datetime) -> None:
        """Put the clock at ``when`` (aware, not earlier than now)."""
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError("ManualClock.set needs a timezone-aware time")
        with self._lock:
            if when < self._now:
                raise ValueError("a clock only moves forward")
            self._now = when.astimezone(dt.UTC)

    def __repr__(self) -> str:
        return f"ManualClock({self.now().isoformat()})"


def as_clock(clock: Clock | Callable[[], dt.datetime] | None) -> Clock:
    """Return ``clock`` as a :class:`Clock`.

    ``None`` is the system clock; a plain function returning aware datetimes (the older
    ``clock=`` argument) is wrapped.
    """
    if clock is None:
        return SYSTEM_CLOCK
    if isinstance(clock, Clock):
        return clock
    if callable(clock):
        return _FunctionClock(clock)
    raise TypeError(f"clock must be a Clock or a function returning a datetime, not {clock!r}")


class _FunctionClock:
    """Adapts a zero-argument function returning aware datetimes to :class:`Clock`."""

    def __init__(self, function: Callable[[], dt.datetime]) -> None:
        self._function = function

    def now(self) -> dt.datetime:
        return self._function()

    def __call__(self) -> dt.datetime:
        return self._function()
