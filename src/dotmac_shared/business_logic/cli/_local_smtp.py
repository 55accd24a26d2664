"""A local SMTP server that keeps what it receives: for the demo, tests and benchmarks.

It is ``aiosmtpd``'s ``Controller`` (its own thread and event loop) on a free loopback
port, so nothing outside this machine is ever mailed.
"""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from email.message import EmailMessage
from types import TracebackType
from typing import Any, Self

from aiosmtpd.controller import Controller

__all__ = ["LocalSmtpServer"]


class LocalSmtpServer:
    """Receives e-mail on ``127.0.0.1``: ``messages`` holds each one, in arrival order.

    Args:
        handler: An ``aiosmtpd`` handler to use instead (it must append to
            :attr:`messages` itself, if it wants them kept).

    Example:
        >>> with LocalSmtpServer() as server:  # doctest: +SKIP
        ...     transport = SmtpTransport(server.url)
    """

    def __init__(self, handler: Any = None) -> None:
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._controller = Controller(handler or self, hostname="127.0.0.1", port=self.port)

    @property
    def url(self) -> str:
        """The ``smtp://`` URL of the server (for ``SmtpTransport`` or ``--smtp-url``)."""
        return f"smtp://127.0.0.1:{self.port}"

    def keep(self, content: bytes) -> EmailMessage:
        """Parse and keep one received message; returns it."""
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        if not isinstance(parsed, EmailMessage):  # the default policy always builds one
            raise TypeError(f"expected an EmailMessage, got {type(parsed).__name__}")
        with self._lock:
            self.messages.append(parsed)
        return parsed

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """``aiosmtpd``'s hook for a message's body: keep it and accept it."""
        self.keep(envelope.content)
        return "250 OK"

    def start(self) -> None:
        """Start listening (in a thread of its own)."""
        self._controller.start()

    def stop(self) -> None:
        """Stop listening."""
        self._controller.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
