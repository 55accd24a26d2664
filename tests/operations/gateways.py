"""Payment gateway doubles: the sandbox provider behind a network link a test can break."""

from __future__ import annotations

import asyncio
import socket
from decimal import Decimal

from dotmac_shared.business_logic.operations._adapters import SandboxPaymentGateway
from dotmac_shared.business_logic.operations._ports import ChargeResult


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released): connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LinkGateway:
    """The sandbox provider reached over a link that can be down, as a user's gateway is.

    While ``down``, a charge connects to a loopback port nobody listens on, so the OS
    refuses it (a real ``ConnectionRefusedError``, as an HTTP client would raise) and the
    provider never sees it. With ``lose_reply_after=n``, the charge after the first ``n``
    that went through reaches the provider and is made, then the link drops before the
    reply comes back (``ConnectionResetError``) and stays down: that charge is in doubt.

    Only ``charge``, no batch API, so the billing run charges one by one. ``made`` counts
    the charges that reached the provider; ``calls`` counts every attempt.
    """

    def __init__(
        self,
        provider: SandboxPaymentGateway,
        *,
        down: bool = False,
        lose_reply_after: int | None = None,
    ) -> None:
        self.provider = provider
        self.down = down
        self.lose_reply_after = lose_reply_after
        self.port = _closed_port()
        self.calls = 0
        self.made = 0
        #: Set while a charge waits at ``hold``; cleared to let held charges through.
        self.hold: asyncio.Event | None = None
        self.holding = asyncio.Event()

    async def charge(
        self, *, idempotency_key: str, payment_method_token: str, amount: Decimal, currency: str
    ) -> ChargeResult:
        self.calls += 1
        if self.hold is not None:
            self.holding.set()
            await self.hold.wait()
        if self.down:
            _, writer = await asyncio.open_connection("127.0.0.1", self.port)  # refused
            writer.close()  # pragma: no cover - only if something listens on the port
        result = await self.provider.charge(
            idempotency_key=idempotency_key,
            payment_method_token=payment_method_token,
            amount=amount,
            currency=currency,
        )
        self.made += 1
        if self.lose_reply_after is not None and self.made > self.lose_reply_after:
            self.down = True
            raise ConnectionResetError(f"link to the provider dropped before {idempotency_key}")
        return result
