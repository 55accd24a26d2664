"""The e-mail transport: notices rendered from templates, sent by SMTP (``aiosmtplib``)."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
from email.charset import QP, Charset
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from urllib.parse import quote, unquote, urlsplit

import aiosmtplib

from dotmac_shared.business_logic.clock import Clock, as_clock
from dotmac_shared.business_logic.exceptions import InvalidInputError, NotificationDeliveryError
from dotmac_shared.business_logic.operations.notifications._decide import smtp_code_is_transient
from dotmac_shared.business_logic.operations.notifications._templates import NoticeTemplates
from dotmac_shared.business_logic.operations.notifications._transport import OutgoingNotice

__all__ = ["DEFAULT_SENDER", "SmtpTransport", "message_id_for"]

# UTF-8 parts and headers in quoted-printable: readable in the raw message, unlike base64.
_UTF8_QP = Charset("utf-8")
_UTF8_QP.header_encoding = _UTF8_QP.body_encoding = QP

#: The ``From`` address unless one is given.
DEFAULT_SENDER = "DotMac <no-reply@dotmac.localhost>"

# RFC 5322 atext minus "%" and "." (escaped by quote, so the id-left is a valid dot-atom).
_ATEXT_SAFE = "!#$&'*+-/=?^_`{|}~"


def message_id_for(dedupe_key: str, domain: str) -> str:
    """The ``Message-ID`` of a notice: the dedupe key, so every retry carries the same id.

    Characters an RFC 5322 message id cannot hold are percent-escaped.

    Example:
        >>> message_id_for("inv-1:issued", "example.com")
        '<inv-1%3Aissued@example.com>'
    """
    return f"<{quote(dedupe_key, safe=_ATEXT_SAFE).replace('.', '%2E')}@{domain}>"


class SmtpTransport:
    """Sends ``email`` notices through one SMTP server, reusing a connection between sends.

    Args:
        url: ``smtp://[user:password@]host[:port]`` (STARTTLS when the server offers it)
            or ``smtps://...`` (TLS from the start).
        sender: The ``From`` address.
        templates: The notice texts (the shipped templates by default).
        timeout: Seconds for connecting and for each SMTP command.
        clock: The time source of the ``Date`` header.

    Raises:
        InvalidInputError: ``url`` is not an ``smtp://`` or ``smtps://`` URL with a host.
    """

    channel = "email"

    def __init__(
        self,
        url: str,
        *,
        sender: str = DEFAULT_SENDER,
        templates: NoticeTemplates | None = None,
        timeout: float = 30.0,
        clock: Clock | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise InvalidInputError(
                "SMTP URL must look like smtp://host:port or smtps://host:port, got "
                f"{parts.scheme or 'no scheme'}://{parts.hostname or '(no host)'}",
                field="smtp_url",
            )
        try:
            port = parts.port
        except ValueError as exc:
            raise InvalidInputError(f"SMTP URL has a bad port: {exc}", field="smtp_url") from exc
        self.hostname = parts.hostname
        self.port = port or (465 if parts.scheme == "smtps" else 25)
        self._use_tls = parts.scheme == "smtps"
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self.sender = sender
        name, address = email.utils.parseaddr(sender)
        if "@" not in address or "\n" in sender or "\r" in sender:
            raise InvalidInputError(
                f"sender must be an e-mail address, got {sender!r}", field="sender"
            )
        self._envelope_sender = address
        # Only the display name may be encoded (RFC 2047); the address stays as it is.
        self._from_header = email.utils.formataddr((name, address), charset="utf-8")
        self.domain = address.rpartition("@")[2] or "dotmac.localhost"
        self._templates = templates or NoticeTemplates()
        self._timeout = timeout
        self._clock = as_clock(clock)
        self._client: aiosmtplib.SMTP | None = None
        # One relay delivers one message at a time, but a shared transport must not
        # interleave two messages' commands on one connection.
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:  # no password
        return f"SmtpTransport(smtp{'s' if self._use_tls else ''}://{self.hostname}:{self.port})"

    def build_message(self, notice: OutgoingNotice) -> MIMEMultipart:
        """The e-mail of ``notice``: text and HTML parts, ``Message-ID`` from its dedupe key.

        Built with the ``email.mime`` classes (the ``compat32`` policy): several times
        cheaper per message than ``EmailMessage``'s parsed headers, which matters at
        thousands of notices per billing run. Header values are checked here instead.

        Raises:
            NotificationDeliveryError: Permanent: the template cannot be rendered or the
                recipient is not a usable address.
        """
        recipient = notice.recipient
        _, address = email.utils.parseaddr(recipient)
        if "\r" in recipient or "\n" in recipient or "@" not in address:
            # A line break would let a payload add headers (Bcc:) to the e-mail.
            raise NotificationDeliveryError(
                f"cannot address notice {notice.dedupe_key!r} to {recipient!r}: "
                "not a single e-mail address",
                transient=False,
                reason="bad_recipient",
            )
        rendered = self._templates.render(
            notice.template, notice.payload, recipient=recipient, tenant_id=notice.tenant_id
        )
        message = MIMEMultipart("alternative")
        message["From"] = self._from_header
        message["To"] = recipient
        message["Subject"] = Header(rendered.subject, _UTF8_QP).encode()  # one line already
        message["Message-ID"] = message_id_for(notice.dedupe_key, self.domain)
        message["Date"] = email.utils.format_datetime(self._clock.now())
        message["X-Dotmac-Notice"] = notice.template
        for subtype, content in (("plain", rendered.text), ("html", rendered.html)):
            part = MIMENonMultipart("text", subtype)
            part.set_payload(content, _UTF8_QP)
            message.attach(part)
        return message

    async def deliver(self, notice: OutgoingNotice) -> None:
        """Send ``notice`` by SMTP (the contract is :class:`Transport`'s).

        Raises:
            NotificationDeliveryError: 4xx replies, refused or dropped connections and
                timeouts are transient; 5xx replies and unrenderable notices are permanent.
        """
        message = self.build_message(notice)
        recipient = email.utils.parseaddr(notice.recipient)[1]
        async with self._lock:
            try:
                client = await self._connected()
                await client.sendmail(self._envelope_sender, [recipient], message.as_bytes())
            except aiosmtplib.SMTPRecipientsRefused as exc:
                await self._drop()
                first = exc.recipients[0]
                raise self._reply_error(first.code, first.message, notice) from exc
            except aiosmtplib.SMTPResponseException as exc:
                await self._drop()
                raise self._reply_error(exc.code, exc.message, notice) from exc
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                # Refused, reset or timed-out connections: the server may be back later.
                await self._drop()
                reason = "timeout" if isinstance(exc, TimeoutError) else "connect"
                raise NotificationDeliveryError(
                    f"SMTP {self.hostname}:{self.port}: {type(exc).__name__}: {exc}",
                    transient=True,
                    reason=reason,
                ) from exc

    def _reply_error(
        self, code: int, text: str, notice: OutgoingNotice
    ) -> NotificationDeliveryError:
        return NotificationDeliveryError(
            f"SMTP {self.hostname}:{self.port} answered {code} {text.strip()} "
            f"for {notice.recipient}",
            transient=smtp_code_is_transient(code),
            reason=f"smtp_{code}",
        )

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        client = aiosmtplib.SMTP(
            hostname=self.hostname,
            port=self.port,
            username=self._username,
            password=self._password,
            use_tls=self._use_tls,
            timeout=self._timeout,
        )
        await client.connect()
        self._client = client
        return client

    async def _drop(self) -> None:
        """Forget the connection after a failure: the next send starts a clean session."""
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            client.close()

    async def aclose(self) -> None:
        """Say QUIT and close the connection, if one is open."""
        async with self._lock:
            client, self._client = self._client, None
            if client is not None and client.is_connected:
                with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                    await client.quit()
                if client.is_connected:
                    client.close()
