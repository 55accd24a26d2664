"""Group commit: saga state changes submitted while a batch is being written go together.

Creating a saga and saving a state change are the saga store's hot path (one per step). Each
is one atomic write per saga; writes submitted while another batch is being written go
together in the next one, so many sagas in flight share round trips and commits. A saga alone
gets a batch of one, written at once. The store supplies the function that writes a batch
(one per dialect); this module only queues, batches and settles.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from dotmac_shared.business_logic.exceptions import PersistenceError

__all__ = ["MAX_BATCH", "GroupCommit", "Write"]

#: Most changes written in one batch (the rest wait for the next).
MAX_BATCH = 256


@dataclasses.dataclass(slots=True, eq=False)
class Write:
    """One saga's state change, waiting for its batch.

    ``new`` (a create) or ``change`` (a save) is set, with ``steps`` and ``events``; all
    values encoded.
    The future's result: for a create, whether the saga was inserted; for a save, the cancel
    flag, or None if the writer no longer holds the lease (nothing of it was written).
    """

    saga_id: str
    new: tuple[Any, ...] | None
    change: tuple[Any, ...] | None
    final: bool
    steps: list[tuple[Any, ...]]
    future: asyncio.Future[bool | None]
    #: History entries written with the change (only if the change lands).
    events: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)


Writer = Callable[[list[Write]], Awaitable[dict[str, bool | None]]]


class GroupCommit:
    """Writes submitted while a batch is being written go together in the next batch.

    The first writer finding nothing in progress lets the event loop run once, so that
    writers ready to write join its batch, then writes the batch itself (alone, it is a
    batch of one: no waiting, no extra task). That turn matters on SQLite, where a small
    batch is written without leaving the event loop's thread (``sqlite_driver.run_transaction``):
    without it no other writer could queue, and one transaction per change is slower than
    one per batch. Changes that arrive meanwhile queue up; when the batch is done, a task
    writes everything queued as the next batch, and so on. Each saga appears at most once
    per batch. If a batch fails, its changes are written one by one, so one bad change fails
    only its own writer. A writer cancelled before its batch started writes nothing.
    """

    def __init__(self, write: Writer) -> None:
        self._write = write
        self._queue: list[Write] = []
        self._busy = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, change: Write) -> bool | None:
        """Write ``change`` in the next batch; return its result (see :class:`Write`)."""
        loop = change.future.get_loop()
        if loop is not self._loop:
            # First use, or the store moved to another event loop (the old one is gone, and
            # with it anything it had queued).
            self._loop, self._queue, self._busy = loop, [], False
        self._queue.append(change)
        if self._busy:
            return await change.future
        self._busy = True
        try:
            await asyncio.sleep(0)  # one turn of the loop: see the class docstring
            await self._flush(self._take())
        except BaseException:
            if change.future.done() and not change.future.cancelled():
                change.future.exception()  # retrieved: it is raised right here instead
            raise
        finally:
            self._hand_over()
        return change.future.result()

    def _take(self) -> list[Write]:
        batch: list[Write] = []
        later: list[Write] = []
        sagas: set[str] = set()
        for change in self._queue:
            if change.future.done():  # its writer was cancelled: write nothing
                continue
            if change.saga_id in sagas or len(batch) >= MAX_BATCH:
                later.append(change)
            else:
                sagas.add(change.saga_id)
                batch.append(change)
        self._queue = later
        return batch

    def _hand_over(self) -> None:
        if not self._queue:
            self._busy = False
            return
        task = asyncio.get_running_loop().create_task(self._drain())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        try:
            while self._queue:
                await self._flush(self._take())
        finally:
            self._busy = False
            abandoned, self._queue = self._queue, []
            for change in abandoned:  # only if this task was cancelled (loop shutdown)
                _settle(
                    change, PersistenceError("saga state write abandoned", operation="saga.save")
                )

    async def _flush(self, batch: list[Write]) -> None:
        if not batch:
            return
        try:
            try:
                results = await self._write(batch)
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0], exc)
                    return
                # Nothing of the batch was written (one statement or one transaction):
                # write each change alone, so that only a bad one fails.
                for change in batch:
                    if change.future.done():
                        continue
                    try:
                        alone = await self._write([change])
                    except Exception as error:
                        _settle(change, error)
                    else:
                        _settle(change, alone[change.saga_id])
                return
            for change in batch:
                _settle(change, results[change.saga_id])
        except BaseException:
            # Cancelled mid-write (the loop is shutting down, or the only writer gave up):
            # whether the batch landed is unknown. The recovery worker will know.
            lost = PersistenceError(
                "saga state write interrupted; it may or may not have been committed",
                operation="saga.save",
            )
            for change in batch:
                _settle(change, lost)
            raise


def _settle(change: Write, outcome: bool | None | Exception) -> None:
    if change.future.done():
        return
    if isinstance(outcome, Exception):
        change.future.set_exception(outcome)
    else:
        change.future.set_result(outcome)
