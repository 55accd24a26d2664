"""Webhook signatures: what the relay signs, a receiver verifies; anything else is refused."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.operations.notifications import (
    sign_webhook,
    verify_webhook_signature,
)

CLOCK = ManualClock()


def now() -> int:
    return int(CLOCK.now().timestamp())


@given(secret=st.text(min_size=1), body=st.binary())
def test_signed_body_verifies_when_the_secret_and_body_are_the_same(secret, body):
    verify_webhook_signature(secret, body, sign_webhook(secret, body, now()), clock=CLOCK)


@given(body=st.binary(), other=st.binary())
def test_signature_is_refused_when_the_body_was_altered(body, other):
    header = sign_webhook("s3cret", body, now())
    if other != body:
        with pytest.raises(InvalidInputError, match="does not match"):
            verify_webhook_signature("s3cret", other, header, clock=CLOCK)


def test_signature_verifies_when_one_of_several_v1_entries_matches():
    header = sign_webhook("new", b"{}", now()) + ",v1=" + "0" * 64
    verify_webhook_signature("new", b"{}", header, clock=CLOCK)


@pytest.mark.parametrize("skew", [-301, 301])
def test_signature_is_refused_when_its_timestamp_is_outside_the_tolerance(skew):
    header = sign_webhook("s3cret", b"{}", now() + skew)
    with pytest.raises(InvalidInputError, match="300 s from now") as caught:
        verify_webhook_signature("s3cret", b"{}", header, clock=CLOCK)
    assert caught.value.field == "X-Dotmac-Signature"


@pytest.mark.parametrize("header", [None, "", "v1=abc", "t=soon,v1=abc", "t=1700000000"])
def test_signature_is_refused_when_the_header_is_missing_or_malformed(header):
    with pytest.raises(InvalidInputError, match="X-Dotmac-Signature"):
        verify_webhook_signature("s3cret", b"{}", header, clock=CLOCK)


def test_signature_covers_the_timestamp_when_it_is_replayed_with_another():
    stamp = now()
    header = sign_webhook("s3cret", b"{}", stamp)
    forged = header.replace(f"t={stamp}", f"t={stamp + 1}")
    with pytest.raises(InvalidInputError, match="does not match"):
        verify_webhook_signature(
            "s3cret", b"{}", forged, clock=ManualClock(CLOCK.now() + dt.timedelta(seconds=1))
        )
