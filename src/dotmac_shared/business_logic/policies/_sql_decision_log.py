"""The decision log in the database: batched inserts into ``dotmac_policy_decisions``.

This module is the SQL sink of the decision log; the policy core never imports it (the engine
only knows the :class:`~.core.DecisionRecorder` protocol), and the package
:mod:`dotmac_shared.business_logic.policies` loads it only when :class:`SqlDecisionRecorder`
is first used. Recording a decision appends it to the in-memory buffer; a background task on
the event loop that started the recorder inserts the buffer in batches, one transaction per
batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from typing import Any, Final

from sqlalchemy import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from dotmac_shared.business_logic.exceptions import PersistenceError
from dotmac_shared.business_logic.persistence._session import database_error, engine_of
from dotmac_shared.business_logic.persistence.models._policy_decisions import PolicyDecisionEntry
from dotmac_shared.business_logic.policies.core._decision_log import (
    BufferedDecisionRecorder,
    DecisionRecord,
    flush_seconds,
)

__all__ = ["SqlDecisionRecorder"]

logger = logging.getLogger(__name__)

# PostgreSQL text and JSONB refuse NUL characters and lone surrogates; json.dumps escapes
# both (and surrogate pairs), so one search over the text finds the values to clean.
_UNSTORABLE: Final = re.compile(r"\\u(?:0000|d[89a-f])")


def _scrub(value: Any) -> Any:
    """``value`` with NULs and unpaired surrogates in strings replaced (keys too)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, dict):
        return {_scrub(key): _scrub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    return value


def _storable(value: Any) -> Any:
    if _UNSTORABLE.search(json.dumps(value)) is None:
        return value
    return _scrub(value)


def _row(record: DecisionRecord) -> dict[str, Any]:
    return {
        "recorded_at": record.recorded_at,
        "policy_name": record.policy_name,
        "policy_version": record.policy_version,
        "content_hash": record.content_hash,
        "tenant_id": _storable(record.tenant_id),
        "decision": record.decision.value,
        "failed_rules": list(record.failed_rules),
        "input": _storable(record.input),
        "context": _storable(record.context),
    }


class SqlDecisionRecorder(BufferedDecisionRecorder):
    """Record decisions into the ``dotmac_policy_decisions`` table, in batches.

    Use it as an async context manager (or call :meth:`start` and :meth:`aclose`) inside
    the event loop that owns ``session_factory``: a background task inserts the buffer
    every ``flush_interval`` seconds (sooner when ``batch_size`` records wait), and leaving
    the block flushes the rest. ``record`` (what the engine calls) may run on any thread.

    Args:
        session_factory: A migrated session factory (``create_session_factory``).
        flush_interval: Seconds between background writes.
        **options: Sampling, redaction, clock and buffer options of
            :class:`~.core.BufferedDecisionRecorder`.

    Raises:
        InvalidInputError: Bad options.

    Example:
        >>> async with SqlDecisionRecorder(factory, sample_rate=0.1) as log:  # doctest: +SKIP
        ...     engine.recorder = log
    """

    def __init__(
        self,
        session_factory: async_sessionmaker[AsyncSession],
        *,
        flush_interval: float = 1.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self._factory = session_factory
        self._interval = flush_seconds(flush_interval)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self) -> None:
        """Start the background writer on the running loop (idempotent)."""
        if self._task is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="policy-decision-log")

    def _batch_ready(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._closing:
            with contextlib.suppress(TimeoutError):  # the interval passed: write anyway
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            if self._closing:
                return
            try:
                await self.flush()
            except PersistenceError:
                # Nobody awaits this task: say so loudly; the records stay buffered and
                # the next flush (or aclose) retries them and raises to its caller.
                logger.exception("decision log: background write failed")

    async def flush(self) -> int:
        """Insert every buffered record now, one transaction per batch.

        Returns:
            How many records were written.

        Raises:
            PersistenceError: A batch failed (it stays buffered, before newer records).
        """
        lock = self._lock if self._lock is not None else asyncio.Lock()
        async with lock:
            written = 0
            while self.pending:
                records = self.take(self.batch_size)
                try:
                    async with self._factory() as session, session.begin():
                        await session.execute(
                            insert(PolicyDecisionEntry), [_row(record) for record in records]
                        )
                except (SQLAlchemyError, OSError) as exc:
                    self.put_back(records)
                    raise database_error(
                        engine_of(self._factory).url,
                        exc,
                        doing="write the decision log to",
                        operation="decision_log",
                    ) from exc
                written += len(records)
            return written

    async def aclose(self) -> None:
        """Stop the background writer and flush what is left (idempotent).

        Raises:
            PersistenceError: The final write failed (the records stay buffered).
        """
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            assert self._wake is not None
            self._wake.set()
            await task
        await self.flush()

    async def __aenter__(self) -> SqlDecisionRecorder:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
