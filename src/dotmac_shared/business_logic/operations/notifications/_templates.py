"""The e-mail texts of the notices the ISP operations queue (Jinja2 templates, package data).

Each notice ``<name>`` has three templates in ``templates/``: ``<name>.subject.j2`` (one
line), ``<name>.txt.j2`` (the plain-text part) and ``<name>.html.j2`` (the HTML part,
autoescaped: a customer's name cannot inject markup). Variables are the outbox row's
``payload`` plus ``recipient`` and ``tenant_id``; a variable the payload lacks is an error,
never a blank in a customer's e-mail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jinja2

from dotmac_shared.business_logic.exceptions import NotificationDeliveryError

__all__ = ["NOTICE_TEMPLATES", "NoticeTemplates", "RenderedNotice"]

#: The notices shipped: invoice issued, payment failed (billing runs), service activated.
NOTICE_TEMPLATES = ("invoice_issued", "payment_failed", "service_activated")


@dataclasses.dataclass(frozen=True, slots=True)
class RenderedNotice:
    """A notice ready to send: subject line, plain-text body, HTML body."""

    subject: str
    text: str
    html: str


class NoticeTemplates:
    """Renders notices from a Jinja2 loader (the shipped templates by default).

    Args:
        loader: Where the templates are; pass a ``jinja2.FileSystemLoader`` to brand them.
    """

    def __init__(self, loader: jinja2.BaseLoader | None = None) -> None:
        self._env = jinja2.Environment(
            loader=loader or jinja2.PackageLoader(__package__ or __name__, "templates"),
            # ".html.j2": the HTML part escapes every value; the text parts must not.
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
        )

    def render(self, template: str, payload: Mapping[str, Any], **extra: Any) -> RenderedNotice:
        """Render notice ``template`` with ``payload`` (and ``extra`` variables).

        Raises:
            NotificationDeliveryError: Permanent (``reason="template"``): no such notice, or
                the payload lacks a variable it uses; the message says which.
        """
        variables = {**payload, **extra}
        try:
            subject = self._env.get_template(f"{template}.subject.j2").render(variables)
            text = self._env.get_template(f"{template}.txt.j2").render(variables)
            html = self._env.get_template(f"{template}.html.j2").render(variables)
        except jinja2.TemplateNotFound as exc:
            raise NotificationDeliveryError(
                f"no notice template {template!r} (missing {exc.name})",
                transient=False,
                reason="template",
            ) from exc
        except jinja2.TemplateError as exc:
            raise NotificationDeliveryError(
                f"notice {template!r} cannot be rendered: {exc}",
                transient=False,
                reason="template",
            ) from exc
        # One line: a newline in a payload value must not become a header injection.
        return RenderedNotice(" ".join(subject.split()), text, html)
