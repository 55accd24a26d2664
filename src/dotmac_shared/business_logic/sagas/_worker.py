"""The recovery worker: a loop of ``coordinator.recover()`` until asked to stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from dotmac_shared.business_logic.observability._log import get_logger
from dotmac_shared.business_logic.sagas._coordinator import SagaCoordinator

__all__ = ["SagaWorker"]

logger = get_logger(__name__)


class SagaWorker:
    """Finds sagas whose worker died (expired lease) and drives them to their end.

    Run as many as you like, on as many machines, against one PostgreSQL: each abandoned
    saga is claimed by exactly one worker. On SQLite, run one.

    A pass that fails (the database is down, say) does not stop the worker: the error is
    logged with its traceback and the next pass comes after a pause that doubles with each
    failure in a row, up to ``max_backoff``, and is reset by a pass that succeeds.

    Args:
        coordinator: A coordinator with every saga definition the worker may meet registered.
        poll_interval: Seconds to sleep when a pass found nothing to do (and the first pause
            after a failed pass).
        batch_size: Sagas claimed per pass.
        max_backoff: Longest pause, in seconds, after failed passes.
    """

    def __init__(
        self,
        coordinator: SagaCoordinator,
        *,
        poll_interval: float = 1.0,
        batch_size: int = 20,
        max_backoff: float = 30.0,
    ) -> None:
        self.coordinator = coordinator
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.max_backoff = max(max_backoff, poll_interval)
        self.recovered = 0
        #: Failed passes so far (each is logged).
        self.failures = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Ask the worker to stop after the current pass."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stop.is_set()

    async def run_once(self) -> int:
        """One recovery pass; returns how many sagas it drove."""
        taken = await self.coordinator.recover(limit=self.batch_size)
        self.recovered += taken
        return taken

    async def run(self, *, handle_signals: bool = False) -> int:
        """Recover sagas until :meth:`stop` (or SIGINT/SIGTERM if ``handle_signals``).

        Returns how many sagas it drove in all.
        """
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop)
        backoff = self.poll_interval
        try:
            while not self._stop.is_set():
                try:
                    taken = await self.run_once()
                except Exception:  # the database may be down: log, wait, try again
                    self.failures += 1
                    logger.exception("saga recovery pass failed; next pass in %.2f s", backoff)
                    await self._pause(backoff)
                    backoff = min(backoff * 2, self.max_backoff)
                    continue
                backoff = self.poll_interval
                if not taken:
                    await self._pause(self.poll_interval)
                # else more may be waiting: go again at once
        finally:
            if handle_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
        logger.info("saga worker stopped after recovering %d sagas", self.recovered)
        return self.recovered

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if :meth:`stop` is called meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
