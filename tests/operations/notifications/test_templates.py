"""The shipped notice texts: each renders; HTML is escaped; a missing variable is refused."""

from __future__ import annotations

import datetime as dt

import pytest

from dotmac_shared.business_logic.exceptions import NotificationDeliveryError
from dotmac_shared.business_logic.operations.notifications import (
    NOTICE_TEMPLATES,
    NoticeTemplates,
    OutgoingNotice,
    SmtpTransport,
)

PAYLOADS = {
    "invoice_issued": {"invoice_id": "inv_1", "total": "49.99", "period": "2026-10"},
    "payment_failed": {"invoice_id": "inv_1", "total": "49.99", "period": "2026-10"},
    "service_activated": {"service_id": "svc_1", "customer_id": "cust789"},
}


@pytest.mark.parametrize("template", NOTICE_TEMPLATES)
def test_each_shipped_notice_renders_subject_text_and_html_when_given_its_payload(template):
    rendered = NoticeTemplates().render(template, PAYLOADS[template])
    assert rendered.subject and "\n" not in rendered.subject
    assert ("inv_1" if "invoice_id" in PAYLOADS[template] else "svc_1") in rendered.text
    assert rendered.html.startswith("<!doctype html>")


def test_html_part_escapes_payload_values_when_they_hold_markup():
    rendered = NoticeTemplates().render(
        "service_activated", {"service_id": "<script>alert(1)</script>"}
    )
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert "<script>" in rendered.text  # the text part is plain text, not HTML


def test_rendering_is_a_permanent_failure_when_the_payload_lacks_a_variable():
    with pytest.raises(NotificationDeliveryError, match="'total' is undefined") as caught:
        NoticeTemplates().render("invoice_issued", {"invoice_id": "inv_1", "period": "2026-10"})
    assert (caught.value.transient, caught.value.reason) == (False, "template")


def test_rendering_is_a_permanent_failure_when_the_notice_is_unknown():
    with pytest.raises(NotificationDeliveryError, match="no notice template 'nope'") as caught:
        NoticeTemplates().render("nope", {})
    assert caught.value.transient is False


def test_email_is_refused_permanently_when_the_recipient_would_inject_a_header():
    notice = OutgoingNotice(
        1,
        "k1",
        "t1",
        "email",
        "a@example.com\nBcc: victim@example.com",
        "service_activated",
        {"service_id": "svc_1"},
        dt.datetime.now(dt.UTC),
        1,
    )
    with pytest.raises(NotificationDeliveryError) as caught:
        SmtpTransport("smtp://127.0.0.1:2525").build_message(notice)
    assert (caught.value.transient, caught.value.reason) == (False, "bad_recipient")
