"""The idempotency manager: claim a key atomically, run once, replay the stored result."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import math
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from dotmac_shared.business_logic.clock import Clock, as_clock
from dotmac_shared.business_logic.exceptions import (
    BusinessLogicError,
    IdempotencyError,
    IdempotencyLeaseLostError,
    IdempotencyPayloadMismatchError,
    IdempotencyResultNotSavedError,
    IdempotencyRetriesExhaustedError,
    InvalidInputError,
    OperationInProgressError,
    PersistenceError,
)
from dotmac_shared.business_logic.idempotency._codec import decode_result, encode_result
from dotmac_shared.business_logic.idempotency._keys import IdempotencyKey, payload_fingerprint
from dotmac_shared.business_logic.idempotency._operation import (
    IdempotentOperation,
    registered_operation,
)
from dotmac_shared.business_logic.idempotency._records import (
    RecordStatus,
    StoredRecord,
    Verdict,
    judge,
)
from dotmac_shared.business_logic.idempotency._store import IdempotencyStore
from dotmac_shared.business_logic.observability._log import get_logger, log_context
from dotmac_shared.business_logic.observability._telemetry import IDEMPOTENCY_REQUESTS, start_span

__all__ = ["IdempotencyManager", "IdempotencyResult"]

_log = get_logger(__name__)


#: The shortest ``retry_after`` suggested: a poll sooner than this only finds the call running.
_MIN_RETRY_AFTER = 0.05
#: Weight of the newest call in an operation type's typical duration (exponential average).
_SMOOTHING = 0.2


@dataclass(frozen=True, slots=True)
class IdempotencyResult:
    """The outcome of one :meth:`IdempotencyManager.execute_idempotent` call.

    Attributes:
        success: The operation completed (now or before).
        data: Its result, decoded (``Decimal``, ``datetime``, ``UUID`` round-trip).
        error: The failure as a mapping (``code``, ``message``, ...) when not ``success``.
        from_cache: The stored outcome of an earlier call was returned; nothing ran.
        attempts: Tries of the operation body during this call (0 when from cache).
        claims: How many callers have claimed this key so far (1 unless taken over).
        idempotency_key: The key.
        tenant_id: The tenant whose key space holds it.
        operation_type: The operation.
        duration_ms: Wall time of this call.
        completed_at: When the stored outcome was written.
    """

    success: bool
    data: dict[str, Any] | None
    error: dict[str, Any] | None
    from_cache: bool
    attempts: int
    claims: int
    idempotency_key: str
    tenant_id: str
    operation_type: str
    duration_ms: float
    completed_at: dt.datetime | None


def _error_document(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, BusinessLogicError):
        return exc.to_dict()
    return {"error": type(exc).__name__, "code": "operation_failed", "message": str(exc)}


class IdempotencyManager:
    """Runs :class:`IdempotentOperation` s at most once per ``(tenant, key)``.

    Args:
        session_factory: The spec's session factory; the default store keeps records in
            its database, and operations receive it as ``context["session_factory"]``.
        store: Another :class:`IdempotencyStore` (e.g. ``RedisIdempotencyStore``).
        raise_on_failure: Re-raise an operation's final failure instead of returning a
            result with ``success=False`` (overridable per call).
        clock: Source of aware UTC time for leases, expiry and timestamps: a
            :class:`~dotmac_shared.business_logic.clock.Clock` (tests pass a ``ManualClock``)
            or a function returning aware datetimes. The default SQL store shares it.

    Example:
        >>> manager = IdempotencyManager(session_factory)  # doctest: +SKIP
        >>> result = await manager.execute_idempotent(  # doctest: +SKIP
        ...     idempotency_key=key, operation_data=data, context={"user_id": "u1"})
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession] | None = None,
        *,
        store: IdempotencyStore | None = None,
        raise_on_failure: bool = False,
        clock: Clock | Callable[[], dt.datetime] | None = None,
    ) -> None:
        self._clock = as_clock(clock)
        if store is None:
            if session_factory is None:
                raise InvalidInputError(
                    "IdempotencyManager needs a session_factory or a store",
                    field="session_factory",
                )
            from dotmac_shared.business_logic.idempotency._sql_store import SqlIdempotencyStore

            store = SqlIdempotencyStore(session_factory, clock=self._clock)
        self.session_factory = session_factory
        self.store = store
        self.raise_on_failure = raise_on_failure
        self._leases = _Leases(self)
        # Typical seconds a call of each operation type takes here (a moving average of the
        # calls this manager finished): what a caller who meets a running call should wait.
        self._typical_seconds: dict[str, float] = {}

    @property
    def clock(self) -> Clock:
        """The clock that dates claims, leases and expiries."""
        return self._clock

    async def execute_idempotent(
        self,
        idempotency_key: IdempotencyKey | str,
        operation_data: Mapping[str, Any],
        context: Mapping[str, Any] | None = None,
        *,
        operation: IdempotentOperation | type[IdempotentOperation] | None = None,
        wait: float | None = None,
        raise_on_failure: bool | None = None,
    ) -> IdempotencyResult:
        """Run the operation for ``idempotency_key`` once; replay its stored outcome after.

        Args:
            idempotency_key: An :class:`IdempotencyKey`, or a client's key string (then
                ``operation`` is required and the tenant is ``context["tenant_id"]``).
            operation_data: The payload; it must match the payload the key was made for.
            context: Passed to the operation, with ``tenant_id``, ``idempotency_key`` and
                ``session_factory`` added.
            operation: The operation; by default the one registered for the key's type.
            wait: Seconds (finite, not negative) to wait for another holder's result
                instead of raising :class:`OperationInProgressError` at once.
            raise_on_failure: Override the manager's failure policy for this call.

        Raises:
            IdempotencyPayloadMismatchError: The key was used for a different payload
                (``metadata["reason"] == "payload"``) or for another operation type
                (``"operation"``); nothing ran and nothing was replayed.
            OperationInProgressError: Another caller holds the key (after ``wait``).
            ResultSerializationError: The payload or the operation's result cannot be
                encoded (an unsupported type, nesting past the codec's limit, or a value that
                contains itself); for a result the claim is released, nothing is stored.
            IdempotencyResultNotSavedError: The body succeeded but its result could not be
                stored while the lease was held (retried with backoff); the store's error is
                ``__cause__``.
            PersistenceError: The store could not be reached or failed.
            InvalidInputError: A malformed argument, e.g. a ``wait`` that is negative, NaN
                or infinite.
        """
        started = time.perf_counter()
        if wait is not None and (
            isinstance(wait, bool)
            or not isinstance(wait, int | float)
            or not math.isfinite(wait)
            or wait < 0
        ):
            raise InvalidInputError(
                f"wait must be a finite number of seconds, 0 or more (got {wait!r})",
                field="wait",
            )
        context = dict(context or {})
        key = self._resolve_key(idempotency_key, operation_data, context, operation)
        op = self._resolve_operation(key, operation)
        attributes = {"operation_type": key.operation_type}
        with (
            start_span("idempotency.execute", attributes) as span,
            log_context(tenant_id=key.tenant_id),
        ):
            held, found = await self._claim(key, op, wait)
            if held is None:
                assert found is not None
                IDEMPOTENCY_REQUESTS.add(1, {**attributes, "outcome": "hit"})
                span.set_attribute("idempotency.outcome", "hit")
                return self._replay(found, key, started, raise_on_failure)
            outcome = "miss" if held.attempts == 1 else "takeover"
            IDEMPOTENCY_REQUESTS.add(1, {**attributes, "outcome": outcome})
            span.set_attribute("idempotency.outcome", outcome)
            context.update(
                tenant_id=key.tenant_id,
                idempotency_key=key.key,
                session_factory=self.session_factory,
            )
            return await self._run(
                held, key, op, operation_data, context, started, raise_on_failure
            )

    # -- key, operation ----------------------------------------------------------------------

    @staticmethod
    def _resolve_key(
        idempotency_key: IdempotencyKey | str,
        operation_data: Mapping[str, Any],
        context: Mapping[str, Any],
        operation: IdempotentOperation | type[IdempotentOperation] | None,
    ) -> IdempotencyKey:
        if not isinstance(operation_data, Mapping):
            raise InvalidInputError("operation_data must be a mapping", field="operation_data")
        if isinstance(idempotency_key, IdempotencyKey):
            if payload_fingerprint(operation_data) != idempotency_key.payload_hash:
                raise IdempotencyPayloadMismatchError(
                    "operation_data differs from the data the idempotency key was made for",
                    idempotency_key=idempotency_key.key,
                    tenant_id=idempotency_key.tenant_id,
                    metadata={"reason": "payload"},
                )
            return idempotency_key
        if operation is None:
            raise InvalidInputError(
                "a plain key string needs operation= (its type is not in the string)",
                field="operation",
            )
        tenant_id = context.get("tenant_id")
        if not isinstance(tenant_id, str):
            raise InvalidInputError(
                "a plain key string needs context['tenant_id'] to scope it", field="tenant_id"
            )
        return IdempotencyKey.from_client(
            idempotency_key,
            operation_type=operation.operation_type,
            tenant_id=tenant_id,
            operation_data=operation_data,
        )

    @staticmethod
    def _resolve_operation(
        key: IdempotencyKey, operation: IdempotentOperation | type[IdempotentOperation] | None
    ) -> IdempotentOperation:
        if operation is None:
            return registered_operation(key.operation_type)()
        op = operation() if isinstance(operation, type) else operation
        if op.operation_type != key.operation_type:
            raise InvalidInputError(
                f"key is for {key.operation_type!r} but the operation is {op.operation_type!r}",
                field="operation",
            )
        return op

    # -- claim ---------------------------------------------------------------------------------

    async def _claim(
        self, key: IdempotencyKey, op: IdempotentOperation, wait: float | None
    ) -> tuple[StoredRecord | None, StoredRecord | None]:
        """Return ``(held, None)`` once this caller holds the key, or ``(None, outcome)``."""
        deadline = None if wait is None else time.monotonic() + wait
        delay = 0.01
        while True:
            now = self._clock.now()
            claim = StoredRecord(
                tenant_id=key.tenant_id,
                key=key.key,
                operation_type=key.operation_type,
                payload_hash=key.payload_hash,
                status=RecordStatus.IN_PROGRESS,
                attempts=1,
                lease_owner=secrets.token_hex(16),
                lease_expires_at=now + dt.timedelta(seconds=op.lease_seconds),
                expires_at=now + op.ttl,
                created_at=now,
            )
            found = await self.store.insert_or_get(claim)
            verdict = judge(found, key.payload_hash, now, key.operation_type)
            if verdict is Verdict.CLAIM:
                return claim, None
            assert found is not None
            if verdict is Verdict.REPLAY:
                return None, found
            if verdict is Verdict.TAKE_OVER:
                # Conditional on the token we saw: of several callers finding the same dead
                # claim, exactly one replaces it; the others read again and see it live.
                taken = claim.evolve(attempts=found.attempts + 1)
                if await self.store.replace(found, taken):
                    _log.warning("took over idempotency key %s (claim %d)", key.key, taken.attempts)
                    return taken, None
                continue
            if verdict is Verdict.MISMATCH or verdict is Verdict.OTHER_OPERATION:
                IDEMPOTENCY_REQUESTS.add(
                    1, {"operation_type": key.operation_type, "outcome": "conflict"}
                )
                raise self._mismatch(key, found, verdict)
            retry_after = self._retry_after(key.operation_type, found, now)
            if deadline is None or time.monotonic() >= deadline:
                IDEMPOTENCY_REQUESTS.add(
                    1, {"operation_type": key.operation_type, "outcome": "in_progress"}
                )
                raise OperationInProgressError(
                    f"idempotency key {key.key!r} is being executed by another caller",
                    idempotency_key=key.key,
                    tenant_id=key.tenant_id,
                    operation=key.operation_type,
                    retry_after=retry_after,
                )
            await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 0.5)

    def _retry_after(self, operation_type: str, found: StoredRecord, now: dt.datetime) -> float:
        """Seconds until the running call is likely done.

        Its typical duration less the time it has run, never past its lease (then the key can
        be taken over); the lease's remainder while no call of this type has finished here.
        """
        lease_left = max(0.0, ((found.lease_expires_at or now) - now).total_seconds())
        typical = self._typical_seconds.get(operation_type)
        if typical is None:
            return lease_left
        running_for = max(0.0, (now - found.created_at).total_seconds())
        return min(lease_left, max(_MIN_RETRY_AFTER, typical - running_for))

    def _observe(self, operation_type: str, seconds: float) -> None:
        """Fold one finished call's duration into its type's moving average."""
        previous = self._typical_seconds.get(operation_type)
        self._typical_seconds[operation_type] = (
            seconds if previous is None else previous + _SMOOTHING * (seconds - previous)
        )

    @staticmethod
    def _mismatch(
        key: IdempotencyKey, found: StoredRecord, verdict: Verdict
    ) -> IdempotencyPayloadMismatchError:
        """The IETF draft's 422 case: a key reused for another payload or another operation."""
        if verdict is Verdict.OTHER_OPERATION:
            return IdempotencyPayloadMismatchError(
                f"idempotency key {key.key!r} belongs to operation {found.operation_type!r}, "
                f"not {key.operation_type!r}; use a new key for another operation",
                idempotency_key=key.key,
                tenant_id=key.tenant_id,
                operation=key.operation_type,
                metadata={"reason": "operation", "stored_operation": found.operation_type},
            )
        return IdempotencyPayloadMismatchError(
            f"idempotency key {key.key!r} was used for a different payload",
            idempotency_key=key.key,
            tenant_id=key.tenant_id,
            operation=key.operation_type,
            metadata={"reason": "payload"},
        )

    # -- outcomes ------------------------------------------------------------------------------

    def _replay(
        self,
        record: StoredRecord,
        key: IdempotencyKey,
        started: float,
        raise_on_failure: bool | None,
    ) -> IdempotencyResult:
        success = record.status is RecordStatus.COMPLETED
        result = IdempotencyResult(
            success=success,
            data=decode_result(record.result) if record.result is not None else None,
            error=record.error,
            from_cache=True,
            attempts=0,
            claims=record.attempts,
            idempotency_key=key.key,
            tenant_id=key.tenant_id,
            operation_type=key.operation_type,
            duration_ms=(time.perf_counter() - started) * 1000,
            completed_at=record.completed_at,
        )
        if not success and self._raises(raise_on_failure):
            raise IdempotencyError(
                f"idempotency key {key.key!r} holds a stored failure: "
                f"{(record.error or {}).get('message', 'unknown error')}",
                idempotency_key=key.key,
                tenant_id=key.tenant_id,
                operation=key.operation_type,
                metadata={"stored_error": record.error},
            )
        return result

    def _raises(self, override: bool | None) -> bool:
        return self.raise_on_failure if override is None else override

    async def _run(
        self,
        held: StoredRecord,
        key: IdempotencyKey,
        op: IdempotentOperation,
        operation_data: Mapping[str, Any],
        context: dict[str, Any],
        started: float,
        raise_on_failure: bool | None,
    ) -> IdempotencyResult:
        tries = [0]
        lease = self._leases.hold(held, op.lease_seconds)
        try:
            try:
                data = await self._attempts(op, operation_data, context, tries)
                encoded = encode_result(data)  # before anything is stored
            except RetryError as exhausted:
                last = exhausted.last_attempt.exception()
                failure: BaseException = IdempotencyRetriesExhaustedError(
                    f"{key.operation_type} failed {tries[0]} times: {last}",
                    idempotency_key=key.key,
                    tenant_id=key.tenant_id,
                    operation=key.operation_type,
                    attempts=tries[0],
                )
                failure.__cause__ = last
                return await self._fail(held, key, op, failure, tries[0], started, raise_on_failure)
            except IdempotencyError:
                await self.store.release(held)  # e.g. an unencodable result: nothing stored
                raise
            except Exception as exc:  # noqa: BLE001 - stored or re-raised below, never lost
                return await self._fail(held, key, op, exc, tries[0], started, raise_on_failure)
        except BaseException:
            # Cancelled or interrupted: give the key back at once rather than after the lease.
            with contextlib.suppress(Exception):
                await asyncio.shield(self.store.release(held))
            raise
        finally:
            lease_ends = self._leases.drop(lease)
        now = self._clock.now()
        done = held.evolve(
            status=RecordStatus.COMPLETED,
            result=encoded,
            completed_at=now,
            expires_at=now + op.ttl,
            lease_expires_at=None,
        )
        if not await self._save(done, key, lease_ends):
            raise self._lease_lost(key)
        seconds = time.perf_counter() - started
        self._observe(key.operation_type, seconds)
        return IdempotencyResult(
            success=True,
            data=decode_result(encoded),
            error=None,
            from_cache=False,
            attempts=tries[0],
            claims=held.attempts,
            idempotency_key=key.key,
            tenant_id=key.tenant_id,
            operation_type=key.operation_type,
            duration_ms=seconds * 1000,
            completed_at=now,
        )

    async def _save(self, done: StoredRecord, key: IdempotencyKey, lease_ends: float) -> bool:
        """Store a succeeded body's result; ``False`` when the claim was taken over.

        The body's effects have happened, so a store error is retried with backoff rather
        than reported at once: a caller who got an error retries, and once the lease has run
        out that retry runs the body again. Retrying stops when the next try would start
        after the lease runs out (``lease_ends``, event-loop time): from then on another
        caller may take the key over and run the body, and the fenced write could no longer
        land. The write is conditional on this holder's token, so a late try that does land
        is still correct.

        Raises:
            IdempotencyResultNotSavedError: Every try failed with a store error (the last
                one chained as ``__cause__``).
        """
        try:  # the common case, without building the retry machinery
            return await self.store.finish(done)
        except PersistenceError as exc:
            first_error = exc
        loop = asyncio.get_running_loop()

        def lease_runs_out(state: RetryCallState) -> bool:
            return loop.time() + state.upcoming_sleep >= lease_ends

        def log_retry(state: RetryCallState) -> None:
            _log.warning(
                "could not store the result of idempotency key %s (try %d), retrying: %s",
                key.key,
                state.attempt_number + 1,
                state.outcome.exception() if state.outcome else None,
            )

        _log.warning(
            "could not store the result of idempotency key %s; retrying while the lease holds: %s",
            key.key,
            first_error,
        )
        retrying = AsyncRetrying(
            stop=lease_runs_out,
            wait=wait_exponential_jitter(multiplier=0.05, max=1.0, jitter=0.05),
            retry=retry_if_exception_type(PersistenceError),
            before_sleep=log_retry,
            reraise=False,
        )
        try:
            saved: bool = await retrying(self.store.finish, done)
        except RetryError as exhausted:
            cause = exhausted.last_attempt.exception() or first_error
            tries = exhausted.last_attempt.attempt_number + 1
            _log.error("the result of idempotency key %s was not stored: %s", key.key, cause)
            raise IdempotencyResultNotSavedError(
                f"{key.operation_type} ran, but its result could not be stored under "
                f"{key.key!r} within its lease ({tries} tries); a retry after the lease runs "
                "out runs it again",
                idempotency_key=key.key,
                tenant_id=key.tenant_id,
                operation=key.operation_type,
                metadata={"tries": tries},
            ) from cause
        return saved

    @staticmethod
    async def _attempts(
        op: IdempotentOperation,
        operation_data: Mapping[str, Any],
        context: dict[str, Any],
        tries: list[int],
    ) -> Mapping[str, Any]:
        """Run the body, retrying ``op.retry_on`` errors with backoff (tenacity)."""
        if not op.retry_on or op.max_attempts <= 1:  # nothing to retry: no retry machinery
            tries[0] = 1
            context["attempt"] = 1
            return await op.execute(operation_data, context)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(op.max_attempts),
            wait=wait_exponential_jitter(
                multiplier=op.retry_initial_delay,
                max=op.retry_max_delay,
                jitter=op.retry_initial_delay,
            ),
            retry=retry_if_exception_type(op.retry_on),
            reraise=False,
        )
        async for attempt in retrying:
            with attempt:
                tries[0] += 1
                context["attempt"] = tries[0]
                data = await op.execute(operation_data, context)
        return data

    async def _fail(
        self,
        held: StoredRecord,
        key: IdempotencyKey,
        op: IdempotentOperation,
        exc: BaseException,
        tries: int,
        started: float,
        raise_on_failure: bool | None,
    ) -> IdempotencyResult:
        error = _error_document(exc)
        now = self._clock.now()
        if op.cache_failures:
            failed = held.evolve(
                status=RecordStatus.FAILED,
                error=error,
                completed_at=now,
                expires_at=now + op.ttl,
                lease_expires_at=None,
            )
            if not await self.store.finish(failed):
                raise self._lease_lost(key) from exc
        else:
            await self.store.release(held)
        _log.warning("idempotent %s failed after %d tries: %s", key.operation_type, tries, exc)
        if self._raises(raise_on_failure):
            raise exc
        return IdempotencyResult(
            success=False,
            data=None,
            error=error,
            from_cache=False,
            attempts=tries,
            claims=held.attempts,
            idempotency_key=key.key,
            tenant_id=key.tenant_id,
            operation_type=key.operation_type,
            duration_ms=(time.perf_counter() - started) * 1000,
            completed_at=now if op.cache_failures else None,
        )

    @staticmethod
    def _lease_lost(key: IdempotencyKey) -> IdempotencyLeaseLostError:
        return IdempotencyLeaseLostError(
            f"the claim on {key.key!r} expired and was taken over while this call ran",
            idempotency_key=key.key,
            tenant_id=key.tenant_id,
            operation=key.operation_type,
        )

    async def get_record(self, key: IdempotencyKey) -> StoredRecord | None:
        """Return the stored record of ``key`` (for inspection), or ``None``."""
        return await self.store.get(key.tenant_id, key.key)

    async def purge_expired(self, *, batch_size: int = 1000) -> int:
        """Delete every expired record, ``batch_size`` at a time; returns how many."""
        return await self.store.purge_expired(self._clock.now(), batch_size=batch_size)


@dataclass(slots=True)
class _Hold:
    """A claim this manager holds while its operation runs."""

    record: StoredRecord
    seconds: float
    due: float  # loop time of its next renewal
    ends: float  # loop time at which the stored lease runs out, as of the last renewal
    renewing: asyncio.Task[None] | None = None
    lost: bool = False


class _Leases:
    """Renews every claim a manager holds, each every third of its lease, from one timer.

    A timer per call would put a handle on the event loop's heap and a cancelled one after
    it for every call, while most operations finish long before their first renewal.
    """

    def __init__(self, manager: IdempotencyManager) -> None:
        self._manager = manager
        self._held: dict[int, _Hold] = {}
        self._ids = itertools.count()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def hold(self, record: StoredRecord, seconds: float) -> int:
        """Start renewing ``record``'s claim; returns the handle :meth:`drop` takes."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop: the old one's timer will never fire
            self._loop, self._timer = loop, None
            self._held.clear()
        ident = next(self._ids)
        due = loop.time() + seconds / 3
        self._held[ident] = _Hold(record, seconds, due, loop.time() + seconds)
        if self._timer is None or due < self._timer.when():
            self._arm(loop, due)
        return ident

    def drop(self, ident: int) -> float:
        """Stop renewing (the claim is finished, released or lost).

        Returns:
            The loop time at which the claim's lease runs out unless renewed again.
        """
        held = self._held.pop(ident, None)
        if held is None:  # dropped with the old event loop's holds: assume it has run out
            return 0.0
        if held.renewing is not None:
            held.renewing.cancel()
        return held.ends

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._fire)

    def _fire(self) -> None:
        assert self._loop is not None
        self._timer = None
        now = self._loop.time()
        for held in self._held.values():
            if held.lost or held.due > now:
                continue
            held.due = now + held.seconds / 3
            if held.renewing is None or held.renewing.done():
                held.renewing = self._loop.create_task(self._renew(held))
        waiting = [held.due for held in self._held.values() if not held.lost]
        if waiting:
            self._arm(self._loop, min(waiting))

    async def _renew(self, held: _Hold) -> None:
        assert self._loop is not None
        # The stored lease runs from when the renewal was sent, at the latest.
        sent = self._loop.time()
        expires = self._manager.clock.now() + dt.timedelta(seconds=held.seconds)
        try:
            renewed = await self._manager.store.renew(held.record, expires)
        except PersistenceError as exc:  # the store is unreachable: try again next time
            _log.warning("could not renew the idempotency lease on %s: %s", held.record.key, exc)
            return
        if not renewed:
            held.lost = True
            _log.error("lost the idempotency lease on %s", held.record.key)
            return
        held.ends = max(held.ends, sent + held.seconds)
