"""A worker's leases on the sagas it drives: renewal with backoff, deadlines, fenced writes.

A worker may act for a saga only while it holds the saga's lease. :class:`LeaseKeeper` renews
the lease while a saga runs, cancels the running step before the lease could pass to another
worker if it cannot be renewed, and retries a state write that failed on a lost connection
only while the lease is surely still held.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from dotmac_shared.business_logic.clock import Clock
from dotmac_shared.business_logic.exceptions import PersistenceError, SagaLeaseLostError
from dotmac_shared.business_logic.observability._log import get_logger
from dotmac_shared.business_logic.persistence._driver import is_connection_error
from dotmac_shared.business_logic.sagas._results import SagaEvent
from dotmac_shared.business_logic.sagas._store import SagaRecord, SagaStore, StepRecord

__all__ = ["Lease", "LeaseKeeper", "describe"]

logger = get_logger(__name__)

#: Share of the lease kept in reserve. A worker that cannot renew stops its step this long
#: before its lease would expire, so that the step has stopped before another worker may
#: claim the saga: it covers the time the step takes to stop, the round trip that wrote the
#: lease, and the skew between the wall clocks of the two workers' hosts.
_LEASE_MARGIN = 0.2
#: First pause before retrying a failed renewal or state write; doubled each time, at most
#: a tenth of the lease.
_RETRY_DELAY = 0.05


def describe(exc: BaseException) -> str:
    """``exc`` in one line, for log messages."""
    return f"{type(exc).__name__}: {exc}"


class Lease:
    """This worker's hold on one saga, measured on the event loop's monotonic time.

    The stored lease expires at a wall time of the injected clock; this worker counts its own
    deadline from when it *sent* its last successful renewal (the expiry was computed no
    earlier), on a clock that cannot jump, so it never believes it holds a lease it lost.
    """

    def __init__(self, seconds: float, taken_at: float) -> None:
        self.seconds = seconds
        self.renewed_at = taken_at
        #: Set when this worker gave the saga up (the step was cancelled).
        self.lost = False

    @property
    def deadline(self) -> float:
        """Loop time after which this worker must no longer act for the saga."""
        return self.renewed_at + self.seconds * (1 - _LEASE_MARGIN)


class LeaseKeeper:
    """The leases of the sagas one worker drives right now, and every write made under them.

    Args:
        store: Where the leases and the sagas' state live.
        owner_id: This worker's name in leases.
        lease_seconds: How long a lease lasts without renewal.
        clock: Where the saga's ``updated_at`` comes from.
    """

    def __init__(self, store: SagaStore, owner_id: str, lease_seconds: float, clock: Clock) -> None:
        self._store = store
        self._owner_id = owner_id
        self._seconds = lease_seconds
        self._clock = clock
        # The lease of each saga driven right now (its deadline bounds retries of writes).
        self._leases: dict[str, Lease] = {}

    def hold(self, saga_id: str, leased_at: float | None = None) -> Lease:
        """Count the lease of ``saga_id`` as held from ``leased_at`` (loop time; now by default).

        ``leased_at`` must be no later than when the lease was written: the deadline is
        counted from it.
        """
        taken_at = asyncio.get_running_loop().time() if leased_at is None else leased_at
        lease = self._leases[saga_id] = Lease(self._seconds, taken_at)
        return lease

    def release(self, saga_id: str) -> None:
        """Stop counting the lease of ``saga_id`` (this worker no longer drives the saga)."""
        self._leases.pop(saga_id, None)

    async def run(
        self, record: SagaRecord, lease: Lease, work: Coroutine[Any, Any, SagaRecord]
    ) -> SagaRecord:
        """Run ``work`` (the saga's steps) in a task that is cancelled if the lease cannot be kept.

        Returns what ``work`` returns (the saga's record as it ended).

        Raises:
            SagaLeaseLostError: The lease could not be renewed in time; the work was stopped.
        """
        task = asyncio.create_task(work)
        keeper = asyncio.create_task(self._keep(record, lease, task))
        try:
            return await task  # cancelling this task cancels the work too
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if lease.lost and current is not None and not current.cancelling():
                raise SagaLeaseLostError(
                    f"saga {record.saga_id}: lease lost: it could not be renewed before it "
                    "would expire (database unreachable?); the step was stopped and this "
                    "worker no longer writes the saga",
                    saga_id=record.saga_id,
                    saga_name=record.saga_name,
                    metadata={"lease_owner": self._owner_id},
                ) from None
            raise
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper

    async def after_lost(
        self,
        record: SagaRecord,
        error: SagaLeaseLostError,
        reread: Callable[[], Awaitable[SagaRecord]],
    ) -> SagaRecord:
        """The stored record (``reread``) if the saga has ended, else ``error`` raised.

        Another worker owns the saga now (or will, once the lease expires); this one reports
        what is stored and does nothing more.
        """
        logger.warning("saga %s: %s", record.saga_id, error)
        try:
            async with asyncio.timeout(self._seconds):
                stored = await reread()
        except (PersistenceError, TimeoutError):
            raise error  # noqa: B904 - error keeps its own cause; the failed re-read is context
        if stored.status.is_active:
            raise error
        return stored

    async def _keep(self, record: SagaRecord, lease: Lease, work: asyncio.Task[SagaRecord]) -> None:
        """Renew the lease while the saga runs (a long step must not lose it).

        If it cannot be renewed before ``lease.deadline``, cancel ``work``: the step must stop
        before the lease can pass to another worker.
        """
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.0, lease.renewed_at + self._seconds / 3 - loop.time()))
            if not await self._renew(record, lease):
                lease.lost = True
                work.cancel()
                return

    async def _renew(self, record: SagaRecord, lease: Lease) -> bool:
        """Renew, retrying failures with backoff until the deadline; False if lost."""
        loop = asyncio.get_running_loop()
        delay = _RETRY_DELAY
        while (left := lease.deadline - loop.time()) > 0:
            sent = loop.time()
            try:
                async with asyncio.timeout(left):
                    held = await self._store.renew(record.saga_id, self._owner_id, self._seconds)
            except Exception as exc:  # any failure: retry while the lease may still be ours
                logger.warning(
                    "saga %s: lease renewal failed (%s); retrying for %.2f s",
                    record.saga_id,
                    describe(exc),
                    max(0.0, lease.deadline - loop.time()),
                    exc_info=True,
                )
                await asyncio.sleep(max(0.0, min(delay, lease.deadline - loop.time())))
                delay = min(delay * 2, self._seconds / 10)
                continue
            if not held:
                logger.warning("saga %s: lease taken by another worker", record.saga_id)
                return False
            lease.renewed_at = sent
            return True
        logger.error(
            "saga %s: lease could not be renewed in time; stopping the step", record.saga_id
        )
        return False

    async def save(
        self,
        record: SagaRecord,
        steps: Sequence[StepRecord],
        events: Sequence[SagaEvent] = (),
    ) -> bool:
        """``store.save``; a lost connection retried with backoff while the lease is surely held.

        A retry writes the same values again, fenced by the lease, so a write that did land
        the first time is harmless. Past the lease's deadline (as it stood at the first
        failure) the saga is given up.

        Returns:
            Whether a cancel was requested for the saga (as ``store.save`` says).

        Raises:
            SagaLeaseLostError: The lease is lost, or the write kept failing until the lease's
                deadline.
        """
        loop = asyncio.get_running_loop()
        lease = self._leases.get(record.saga_id)
        give_up_at = lease.deadline if lease is not None else loop.time()
        delay = _RETRY_DELAY
        record.updated_at = self._clock.now()
        if not record.status.is_active:  # the store releases a finished saga's lease
            record.lease_owner = record.lease_expires_at = None
        while True:
            try:
                if events:
                    return await self._store.save(record, steps, self._owner_id, events)
                return await self._store.save(record, steps, self._owner_id)
            except PersistenceError as exc:
                if not is_connection_error(exc):
                    raise  # the write itself is wrong: trying again cannot help
                if loop.time() + delay >= give_up_at:
                    raise SagaLeaseLostError(
                        f"saga {record.saga_id}: lease lost: its state could not be written "
                        f"before the lease would expire ({describe(exc)})",
                        saga_id=record.saga_id,
                        saga_name=record.saga_name,
                        metadata={"lease_owner": self._owner_id},
                    ) from exc
                logger.warning(
                    "saga %s: state write failed (%s); retrying",
                    record.saga_id,
                    describe(exc),
                    exc_info=True,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._seconds / 10)
