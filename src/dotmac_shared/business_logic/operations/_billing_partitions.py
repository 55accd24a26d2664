"""Billing runs spread over many workers: partitions of a run's customers, claimed under leases.

A billing run cuts its customers into id ranges (partitions). Its ``generate_invoices`` step
creates them and waits until every one is invoiced; its ``process_payments`` step opens them
for charging and waits until every one is charged. Any worker process may claim a partition
meanwhile (:class:`BillingPartitionWorker`, which ``dotmac-bl worker`` runs), and the saga's
own worker claims them too while it waits, so one worker alone still finishes a run.

Claims work like saga leases: a claim writes ``claimed_by`` and ``lease_until`` (the injected
clock's time), the claimer renews it while it works, and a partition whose lease passed may be
claimed by another worker, which resumes it. On PostgreSQL a claim reads its candidate ``FOR
UPDATE SKIP LOCKED``, so concurrent claimers never wait on each other; on SQLite the claim's
guarded ``UPDATE`` alone decides. Every batch a worker commits is fenced on its claim (see
:data:`~._billing_steps.Fence`): a worker that lost its partition commits nothing more, and the
partition's counts are those of committed batches only. Charges carry their invoice's key, so
a partition taken over mid-charge never charges a customer twice.

Example:
    >>> worker = BillingPartitionWorker(factory, concurrency=4)  # doctest: +SKIP
    >>> await worker.run()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.clock import Clock, as_clock
from dotmac_shared.business_logic.exceptions import BillingRunError, InvalidInputError
from dotmac_shared.business_logic.observability._log import get_logger
from dotmac_shared.business_logic.operations._adapters import OutboxNotifier, SandboxPaymentGateway
from dotmac_shared.business_logic.operations._billing_steps import BillingRunSteps, billing_run_id
from dotmac_shared.business_logic.operations.models import BillingPartition, Customer, Invoice
from dotmac_shared.business_logic.persistence._sql import insert_for, refresh_statistics

__all__ = [
    "BillingPartitionWorker",
    "BillingPartitions",
    "PartitionClaim",
    "PartitionLostError",
]

logger = get_logger(__name__)

#: Partition statuses. The two claimable ones are the stages a saga step opened.
INVOICING = "invoicing"
INVOICED = "invoiced"
CHARGING = "charging"
CHARGED = "charged"
FAILED = "failed"
CANCELLED = "cancelled"
_CLAIMABLE = (INVOICING, CHARGING)
_NEXT = {INVOICING: INVOICED, CHARGING: CHARGED}
#: Statuses that count as past each stage, for the step that waits on it.
_PAST = {INVOICING: {INVOICED, CHARGING, CHARGED}, CHARGING: {CHARGED}}
_COUNTERS = ("invoices_created", "customers_seen", "paid", "declined", "failed")

_P = BillingPartition

#: Builds the steps a claim runs (gateway, notifier, batch size) from the session factory.
StepsFactory = Callable[[async_sessionmaker[AsyncSession]], BillingRunSteps]


class PartitionLostError(BillingRunError):
    """This worker no longer holds the partition it was billing.

    Its lease passed and another worker claimed it, or the run was cancelled: it stops, and
    the batch it was writing rolls back.
    """

    code = "billing_partition_lost"


def default_worker_id() -> str:
    """``host:pid:random``: a name for a claimer that is unique across processes."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def sandbox_steps(factory: async_sessionmaker[AsyncSession]) -> BillingRunSteps:
    """The shipped steps: the sandbox gateway and the outbox notifier."""
    return BillingRunSteps(factory, SandboxPaymentGateway(factory), OutboxNotifier())


@dataclasses.dataclass(frozen=True, slots=True)
class PartitionClaim:
    """A partition this worker claimed: which customers, which stage, and where to resume.

    Attributes:
        run_id: The billing run (attempt) it belongs to.
        partition: Its number in the run, from 0.
        tenant_id: The tenant billed.
        billing_period: The period, ``YYYY-MM``.
        attempt: The run's attempt number.
        customer_after: Customers with an id above this ...
        customer_last: ... up to this one (``None``: no upper bound).
        stage: ``invoicing`` or ``charging``.
        resume_after: The last customer already invoiced by an earlier claim.
        attempts: How many times it has been claimed, this claim included.
    """

    run_id: str
    partition: int
    tenant_id: str
    billing_period: str
    attempt: int
    customer_after: str
    customer_last: str | None
    stage: str
    resume_after: str
    attempts: int


_CLAIM_COLUMNS = (
    _P.run_id,
    _P.partition,
    _P.tenant_id,
    _P.billing_period,
    _P.attempt,
    _P.customer_after,
    _P.customer_last,
    _P.status,
    _P.resume_after,
    _P.attempts,
)


class BillingPartitions:
    """Creates, claims, bills and waits for the partitions of billing runs.

    Args:
        session_factory: The migrated session factory.
        steps: Builds the steps a claim runs (the sandbox gateway by default).
        lease_seconds: How long a claim holds without renewal; a worker that dies is taken
            over this long after its last renewal.
        clock: Where lease times come from (injected, so tests move it by hand).
        worker_id: This claimer's name in ``claimed_by``.
        poll_interval: Seconds between looks while other workers hold the last partitions.
        max_claims: A partition claimed this many times (its workers keep dying) fails.
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        steps: StepsFactory | None = None,
        lease_seconds: float = 30.0,
        clock: Clock | None = None,
        worker_id: str | None = None,
        poll_interval: float = 0.2,
        max_claims: int = 5,
    ) -> None:
        if lease_seconds <= 0:
            raise InvalidInputError("lease_seconds must be positive", field="lease_seconds")
        if max_claims < 1:
            raise InvalidInputError("max_claims must be at least 1", field="max_claims")
        self.session_factory = session_factory
        self.steps = (steps or sandbox_steps)(session_factory)
        self.lease_seconds = lease_seconds
        self.clock = as_clock(clock)
        self.worker_id = worker_id or default_worker_id()
        self.poll_interval = poll_interval
        self.max_claims = max_claims

    # --- the run's side: create, open, wait, cancel -----------------------------------

    async def create(
        self, tenant_id: str, period: str, *, attempt: int = 1, partition_size: int = 1000
    ) -> int:
        """Cut the run's customers into partitions of ``partition_size`` (once per run).

        All of a run's partitions are written in one transaction, and only if it has none, so
        a re-run after a crash keeps the ranges it had. The last range is open-ended: it also
        takes customers added after the cut.

        Returns:
            How many partitions the run has.
        """
        if partition_size < 1:
            raise InvalidInputError("partition_size must be at least 1", field="partition_size")
        run_id = billing_run_id(tenant_id, period, attempt)
        async with self.session_factory() as session, session.begin():
            existing = (
                await session.execute(select(func.count()).where(_P.run_id == run_id))
            ).scalar_one()
            if existing:
                return int(existing)
            bounds: list[str] = []
            after = ""
            while True:
                ids = list(
                    (
                        await session.execute(
                            select(Customer.id)
                            .where(Customer.tenant_id == tenant_id, Customer.id > after)
                            .order_by(Customer.id)
                            .limit(partition_size)
                        )
                    ).scalars()
                )
                if len(ids) < partition_size:
                    break
                after = ids[-1]
                bounds.append(after)
            edges = ["", *bounds]
            now = self.clock.now()
            rows = [
                {
                    "run_id": run_id,
                    "partition": number,
                    "tenant_id": tenant_id,
                    "billing_period": period,
                    "attempt": attempt,
                    "customer_after": low,
                    "customer_last": bounds[number] if number < len(bounds) else None,
                    "status": INVOICING,
                    "attempts": 0,
                    "resume_after": "",
                    "updated_at": now,
                    **dict.fromkeys(_COUNTERS, 0),
                }
                for number, low in enumerate(edges)
            ]
            await session.execute(insert_for(session, _P).on_conflict_do_nothing(), rows)
        return len(rows)

    async def open_charging(self, run_id: str) -> None:
        """Open the run's invoiced partitions for charging (a repeat call changes nothing)."""
        async with self.session_factory() as session, session.begin():
            # Invoices were just bulk-inserted: without fresh statistics the planner may
            # sort a run's invoices for every batch instead of walking the index.
            await refresh_statistics(session, Invoice.__tablename__)
            await session.execute(
                update(_P)
                .where(_P.run_id == run_id, _P.status == INVOICED)
                .values(
                    status=CHARGING,
                    claimed_by=None,
                    lease_until=None,
                    attempts=0,
                    updated_at=self.clock.now(),
                )
            )

    async def cancel(self, run_id: str) -> int:
        """Stop the run's unfinished partitions (the run compensates); returns how many.

        A worker writing a batch holds its partition's row, so this waits for that batch;
        after it, the worker's fence fails and it commits nothing more for the run.
        """
        async with self.session_factory() as session, session.begin():
            result = await session.execute(
                update(_P)
                .where(_P.run_id == run_id, _P.status.in_(_CLAIMABLE))
                .values(status=CANCELLED, updated_at=self.clock.now())
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def bill_stage(self, run_id: str, stage: str) -> dict[str, int]:
        """Bill the run's partitions of ``stage`` with other workers, until all are past it.

        Claims and bills partitions of this run while any is claimable, then waits for the
        ones other workers hold (taking over any whose lease passes).

        Returns:
            The stage's counts summed over the partitions.

        Raises:
            BillingRunError: A partition failed in another worker, or the run was cancelled.
            Exception: What billing a partition raised in this worker (it is marked failed).
        """
        while True:
            claim = await self.claim(run_id=run_id, stages=(stage,))
            if claim is not None:
                await self.process(claim)
                continue
            async with self.session_factory() as session:
                rows = (
                    await session.execute(
                        select(
                            _P.partition,
                            _P.status,
                            _P.last_error,
                            *(getattr(_P, name) for name in _COUNTERS),
                        )
                        .where(_P.run_id == run_id)
                        .order_by(_P.partition)
                    )
                ).all()
            for row in rows:
                if row.status in (FAILED, CANCELLED):
                    raise BillingRunError(
                        f"partition {row.partition} of billing run {run_id} is {row.status}: "
                        f"{row.last_error or 'the run was cancelled'}",
                        billing_run_id=run_id,
                        metadata={"reason": f"partition_{row.status}", "partition": row.partition},
                    )
            if rows and all(row.status in _PAST[stage] for row in rows):
                return {name: sum(getattr(row, name) for row in rows) for name in _COUNTERS}
            await asyncio.sleep(self.poll_interval)  # other workers hold the rest

    # --- the worker's side: claim, renew, bill ----------------------------------------

    async def claim(
        self, *, run_id: str | None = None, stages: Sequence[str] = _CLAIMABLE
    ) -> PartitionClaim | None:
        """Claim one claimable partition (of ``run_id``, or of any run); ``None`` if none is.

        A partition is claimable in an open stage while nobody holds it or its lease passed.
        """
        while True:
            now = self.clock.now()
            free = or_(_P.lease_until.is_(None), _P.lease_until < now)
            async with self.session_factory() as session, session.begin():
                candidates = select(_P.run_id, _P.partition).where(_P.status.in_(stages), free)
                if run_id is not None:
                    candidates = candidates.where(_P.run_id == run_id)
                candidate = (
                    await session.execute(
                        candidates.order_by(_P.run_id, _P.partition)
                        .limit(1)
                        .with_for_update(skip_locked=True)
                    )
                ).first()
                if candidate is None:
                    return None
                # The guard repeats the candidate's conditions: on SQLite (no row locks) it
                # is what keeps two claimers from both taking the partition.
                row = (
                    await session.execute(
                        update(_P)
                        .where(
                            _P.run_id == candidate.run_id,
                            _P.partition == candidate.partition,
                            _P.status.in_(stages),
                            free,
                        )
                        .values(
                            claimed_by=self.worker_id,
                            lease_until=now + dt.timedelta(seconds=self.lease_seconds),
                            attempts=_P.attempts + 1,
                            updated_at=now,
                        )
                        .returning(*_CLAIM_COLUMNS)
                    )
                ).first()
                if row is None:
                    continue  # another claimer was first: look again
                claim = PartitionClaim(
                    run_id=row.run_id,
                    partition=row.partition,
                    tenant_id=row.tenant_id,
                    billing_period=row.billing_period,
                    attempt=row.attempt,
                    customer_after=row.customer_after,
                    customer_last=row.customer_last,
                    stage=row.status,
                    resume_after=row.resume_after,
                    attempts=row.attempts,
                )
                if claim.attempts <= self.max_claims:
                    if claim.attempts > 1:
                        logger.warning(
                            "billing run %s: took over partition %d (claim %d) after its "
                            "lease passed",
                            claim.run_id,
                            claim.partition,
                            claim.attempts,
                        )
                    return claim
                await session.execute(
                    update(_P)
                    .where(_P.run_id == claim.run_id, _P.partition == claim.partition)
                    .values(
                        status=FAILED,
                        last_error=f"claimed {claim.attempts} times: its workers keep dying",
                    )
                )

    def _mine(self, claim: PartitionClaim) -> Any:
        return (
            (_P.run_id == claim.run_id)
            & (_P.partition == claim.partition)
            & (_P.claimed_by == self.worker_id)
            & (_P.status == claim.stage)
        )

    def fence(self, claim: PartitionClaim) -> Callable[[AsyncSession, dict[str, Any]], Any]:
        """The fence a claim's batches commit through (see :data:`~._billing_steps.Fence`)."""

        async def fence(session: AsyncSession, changes: dict[str, Any]) -> None:
            values: dict[str, Any] = {"updated_at": self.clock.now()}
            for name, value in changes.items():
                values[name] = getattr(_P, name) + value if name in _COUNTERS else value
            result = await session.execute(update(_P).where(self._mine(claim)).values(values))
            if getattr(result, "rowcount", 0) != 1:
                raise PartitionLostError(
                    f"partition {claim.partition} of billing run {claim.run_id} is no longer "
                    f"held by {self.worker_id}",
                    billing_run_id=claim.run_id,
                    metadata={"partition": claim.partition, "worker": self.worker_id},
                )

        return fence

    async def _release(self, claim: PartitionClaim, status: str, error: str | None) -> None:
        async with self.session_factory() as session, session.begin():
            await session.execute(
                update(_P)
                .where(self._mine(claim))
                .values(  # claimed_by stays: who finished (or failed) the stage
                    status=status,
                    lease_until=None,
                    resume_after="",
                    last_error=error,
                    updated_at=self.clock.now(),
                )
            )

    async def _renew(self, claim: PartitionClaim) -> bool:
        now = self.clock.now()
        async with self.session_factory() as session, session.begin():
            result = await session.execute(
                update(_P)
                .where(self._mine(claim))
                .values(lease_until=now + dt.timedelta(seconds=self.lease_seconds), updated_at=now)
            )
        return getattr(result, "rowcount", 0) == 1

    async def _keep(
        self, claim: PartitionClaim, work: asyncio.Task[None], lost: asyncio.Event
    ) -> None:
        """Renew the claim every third of the lease; stop ``work`` once it cannot be held.

        A renewal that fails (the database is unreachable) is retried until a fifth of the
        lease is left, measured on the event loop's monotonic time from the last renewal
        sent: then the work is stopped, before another worker may take the partition over.
        """
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            while True:
                sent = loop.time()
                try:
                    held = await self._renew(claim)
                except Exception as exc:  # retry while the lease surely still holds
                    if loop.time() - renewed > self.lease_seconds * 0.8:
                        logger.error(
                            "billing run %s: partition %d: lease not renewed in time (%s)",
                            claim.run_id,
                            claim.partition,
                            exc,
                        )
                        lost.set()
                        work.cancel()
                        return
                    await asyncio.sleep(min(0.5, self.lease_seconds / 10))
                    continue
                if not held:
                    logger.warning(
                        "billing run %s: partition %d taken by another worker or cancelled",
                        claim.run_id,
                        claim.partition,
                    )
                    lost.set()
                    work.cancel()
                    return
                renewed = sent
                break

    async def process(self, claim: PartitionClaim) -> bool:
        """Bill a claimed partition's stage, renewing the claim meanwhile.

        Returns:
            ``True`` when this worker finished the stage, ``False`` when it lost the
            partition (another worker resumes it, or the run was cancelled).

        Raises:
            Exception: What billing raised; the partition is marked ``failed`` with it,
                and the run's waiting step fails (the run compensates).
        """
        if claim.stage == INVOICING:
            body = self.steps.invoice_partition(claim, self.fence(claim))
        else:
            body = self.steps.charge_partition(claim, self.fence(claim))
        work: asyncio.Task[None] = asyncio.ensure_future(body)
        lost = asyncio.Event()
        keeper = asyncio.create_task(self._keep(claim, work, lost))
        try:
            await work
        except PartitionLostError as exc:
            logger.warning("%s; the worker that holds it now finishes it", exc)
            return False
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if lost.is_set() and (current is None or not current.cancelling()):
                return False  # the keeper stopped the work: the claim is lost
            raise
        except Exception as exc:
            await self._release(claim, FAILED, f"{type(exc).__name__}: {exc}")
            raise
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        await self._release(claim, _NEXT[claim.stage], None)
        return True


class BillingPartitionWorker:
    """Claim loops that bill partitions of any billing run until asked to stop.

    Run one per process with ``concurrency`` loops, in as many processes and on as many
    machines as you like against one PostgreSQL; on SQLite, run one. ``dotmac-bl worker
    --concurrency N`` runs one beside saga recovery.

    A partition that fails is marked ``failed`` (its run compensates) and the loop goes on; a
    pass that cannot reach the database is logged and retried after a pause that doubles
    up to ``max_backoff``.

    Args:
        session_factory: The migrated session factory.
        concurrency: Claim loops in this process (partitions billed at once).
        steps: Builds the steps a claim runs (the sandbox gateway by default).
        lease_seconds: The claims' lease.
        clock: Where lease times come from.
        poll_interval: Seconds to sleep when nothing was claimable.
        max_backoff: Longest pause after failed passes.
        worker_id: This worker's name in claims (``host:pid:random`` by default).
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        concurrency: int = 1,
        steps: StepsFactory | None = None,
        lease_seconds: float = 30.0,
        clock: Clock | None = None,
        poll_interval: float = 1.0,
        max_backoff: float = 30.0,
        worker_id: str | None = None,
    ) -> None:
        if concurrency < 1:
            raise InvalidInputError("concurrency must be at least 1", field="concurrency")
        self.partitions = BillingPartitions(
            session_factory,
            steps=steps,
            lease_seconds=lease_seconds,
            clock=clock,
            worker_id=worker_id,
            poll_interval=poll_interval,
        )
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self.max_backoff = max(max_backoff, poll_interval)
        #: Partition stages this worker finished, and those that failed in it.
        self.billed = 0
        self.failures = 0
        self._stop = asyncio.Event()

    @property
    def worker_id(self) -> str:
        """This worker's name in ``claimed_by``."""
        return self.partitions.worker_id

    def stop(self) -> None:
        """Ask the loops to stop once their current partition is billed."""
        self._stop.set()

    async def run_once(self) -> int:
        """Claim and bill partitions until none is claimable; returns how many it billed."""
        billed = 0
        while (claim := await self.partitions.claim()) is not None:
            try:
                billed += await self.partitions.process(claim)
            except Exception:  # marked failed: its run compensates; this worker goes on
                self.failures += 1
                logger.exception(
                    "billing run %s: partition %d failed", claim.run_id, claim.partition
                )
        self.billed += billed
        return billed

    async def _loop(self) -> None:
        backoff = self.poll_interval
        while not self._stop.is_set():
            try:
                claim = await self.partitions.claim()
            except Exception:  # the database may be down: log, wait, try again
                logger.exception("billing partition claim failed; next in %.2f s", backoff)
                await self._pause(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = self.poll_interval
            if claim is None:
                await self._pause(self.poll_interval)
                continue
            try:
                self.billed += await self.partitions.process(claim)
            except Exception:
                self.failures += 1
                logger.exception(
                    "billing run %s: partition %d failed", claim.run_id, claim.partition
                )

    async def run(self) -> int:
        """Run ``concurrency`` claim loops until :meth:`stop`; returns the stages billed."""
        await asyncio.gather(*(self._loop() for _ in range(self.concurrency)))
        return self.billed

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
