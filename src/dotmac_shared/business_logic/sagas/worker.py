"""The recovery worker: a loop of ``coordinator.recover()`` until asked to stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from dotmac_shared.business_logic.observability.log import get_logger
from dotmac_shared.business_logic.sagas.coordinator import SagaCoordinator

__all__ = ["SagaWorker"]

logger = get_logger(__name__)


class SagaWorker:
    """Finds sagas whose worker died (expired lease) and drives them to their end.

    Run as many as you like, on as many machines, against one PostgreSQL: each abandoned
    saga is claimed by exactly one worker. On SQLite, run one.

    Args:
        coordinator: A coordinator with every saga definition the worker may meet registered.
        poll_interval: Seconds to sleep when a pass found nothing to do.
        batch_size: Sagas claimed per pass.
    """

    def __init__(
        self, coordinator: SagaCoordinator, *, poll_interval: float = 1.0, batch_size: int = 20
    ) -> None:
        self.coordinator = coordinator
        self.poll_interval = poll_interval
        self.batch_size = batch_size
        self.recovered = 0
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
        try:
            while not self._stop.is_set():
                if await self.run_once():
                    continue  # more may be waiting: go again at once
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.poll_interval)
        finally:
            if handle_signals:
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
        logger.info("saga worker stopped after recovering %d sagas", self.recovered)
        return self.recovered
