"""Real receivers on loopback for the relay's tests: an SMTP server and a webhook endpoint.

Both answer from a script (a list of replies, the last one repeated) so a test can make a
server fail transiently, then recover, or fail for good; both record what they received.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from email.message import EmailMessage
from typing import Any

import uvicorn

from dotmac_shared.business_logic.cli._local_smtp import LocalSmtpServer
from dotmac_shared.business_logic.operations import OutboxNotifier
from dotmac_shared.business_logic.operations._ports import Notification
from tests.support.services import free_port


class ScriptedSmtp(LocalSmtpServer):
    """An SMTP server answering DATA from ``replies`` (then "250 OK"), ``delay`` s each.

    Counts, per Message-ID, the deliveries in progress at once (``max_in_flight``).
    """

    def __init__(
        self, replies: Sequence[str] = (), *, delay: float = 0.0, gate_clients: int = 0
    ) -> None:
        super().__init__()
        self.replies = collections.deque(replies)
        self.delay = delay
        # Hold every message until this many client connections have sent one: proves
        # the clients (relays) really deliver at the same time.
        self.gate_clients = gate_clients
        self.clients: set[Any] = set()
        # Stall every message from the hold_from-th on until released: a test kills its
        # sender at a known point (mid-batch) whatever the machine's speed.
        self.hold_from: int | None = None
        self.released = threading.Event()
        self.answered: list[str] = []
        self.in_flight: collections.Counter[str] = collections.Counter()
        self.max_in_flight: collections.Counter[str] = collections.Counter()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.clients.add(session.peer)
        deadline = time.monotonic() + 30
        while len(self.clients) < self.gate_clients and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        message = self.keep(envelope.content)
        if self.hold_from is not None and len(self.messages) >= self.hold_from:
            while not self.released.is_set():
                await asyncio.sleep(0.01)
        message_id = str(message["Message-ID"]).strip()
        with self._lock:
            self.in_flight[message_id] += 1
            self.max_in_flight[message_id] = max(
                self.max_in_flight[message_id], self.in_flight[message_id]
            )
            reply = self.replies.popleft() if self.replies else "250 OK"
            self.answered.append(reply)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            with self._lock:
                self.in_flight[message_id] -= 1
        if not reply.startswith("2"):
            with self._lock:
                self.messages.remove(message)  # refused: not received
        return reply

    def message_ids(self) -> list[str]:
        with self._lock:
            return [str(m["Message-ID"]).strip() for m in self.messages]


class WebhookReceiver:
    """An ASGI endpoint under uvicorn on loopback, answering POSTs with ``statuses``."""

    def __init__(self, statuses: Sequence[int] = ()) -> None:
        self.statuses = collections.deque(statuses)
        self.requests: list[tuple[int, dict[str, str], bytes]] = []
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/dotmac"
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                interface="asgi3",
                lifespan="off",
            )
        )
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._server.serve(),), daemon=True
        )

    async def app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        status = self.statuses.popleft() if self.statuses else 200
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.requests.append((status, headers, body))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"answered %d" % status})

    @contextlib.contextmanager
    def running(self) -> Iterator[WebhookReceiver]:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            assert self._thread.is_alive() and time.monotonic() < deadline, "no start"
            time.sleep(0.02)
        try:
            yield self
        finally:
            self._server.should_exit = True
            self._thread.join(timeout=30)


def invoice_notice(number: int, *, channel: str = "email") -> Notification:
    payload = {"invoice_id": f"inv_{number:05d}", "total": "49.99", "period": "2026-10"}
    return Notification(
        "tenant123",
        f"cust_{number:05d}@example.com",
        "invoice_issued",
        payload,
        f"inv_{number:05d}:issued",
        channel,
    )


async def queue(factory: Any, notices: Sequence[Notification]) -> None:
    async with factory() as session, session.begin():
        await OutboxNotifier().notify_many(session, notices)


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert isinstance(body, EmailMessage)
    return str(body.get_content())
