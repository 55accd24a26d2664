"""The pure decisions: backoff, verdicts, which server answers are transient."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.exceptions import InvalidInputError, NotificationDeliveryError
from dotmac_shared.business_logic.operations.notifications import (
    Backoff,
    decide,
    http_status_is_transient,
    smtp_code_is_transient,
)
from dotmac_shared.business_logic.operations.notifications._decide import Dead, Retry, Sent

NOW = ManualClock().now()


def failure(transient: bool) -> NotificationDeliveryError:
    return NotificationDeliveryError("boom", transient=transient, reason="test")


@given(
    base=st.floats(0.001, 1e4),
    factor=st.floats(1, 1e4),
    attempt=st.integers(1, 10_000),
)
def test_backoff_doubles_until_the_cap_when_attempts_grow(base, factor, attempt):
    backoff = Backoff(base=base, cap=base * factor)
    delay, after = backoff.delay(attempt), backoff.delay(attempt + 1)
    assert dt.timedelta(0) < delay <= after <= dt.timedelta(seconds=backoff.cap)
    if delay.total_seconds() * 2 < backoff.cap:
        assert after.total_seconds() == pytest.approx(delay.total_seconds() * 2)


def test_backoff_is_refused_when_its_base_exceeds_its_cap():
    with pytest.raises(InvalidInputError, match="base <= cap"):
        Backoff(base=10, cap=5)


@given(attempts=st.integers(1, 50), max_attempts=st.integers(1, 50), transient=st.booleans())
def test_verdict_follows_the_failure_and_the_attempts_left_when_decided(
    attempts, max_attempts, transient
):
    backoff = Backoff(base=30, cap=3600)
    assert isinstance(
        decide(None, attempts=attempts, max_attempts=max_attempts, now=NOW, backoff=backoff),
        Sent,
    )
    verdict = decide(
        failure(transient), attempts=attempts, max_attempts=max_attempts, now=NOW, backoff=backoff
    )
    if transient and attempts < max_attempts:
        assert isinstance(verdict, Retry)
        assert verdict.at == NOW + backoff.delay(attempts)
    else:
        assert isinstance(verdict, Dead)


@pytest.mark.parametrize(
    ("code", "transient"), [(421, True), (450, True), (451, True), (550, False), (554, False)]
)
def test_smtp_4xx_is_transient_and_5xx_permanent_when_classified(code, transient):
    assert smtp_code_is_transient(code) is transient


@pytest.mark.parametrize(
    ("status", "transient"),
    [(500, True), (502, True), (503, True), (408, True), (429, True)]
    + [(400, False), (401, False), (404, False), (410, False), (422, False)],
)
def test_http_5xx_408_429_are_transient_and_other_4xx_permanent_when_classified(status, transient):
    assert http_status_is_transient(status) is transient
