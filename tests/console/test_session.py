"""The console's signed session cookie and CSRF token (pure: no server, no database)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dotmac_shared.business_logic.console import ConsoleSession, SessionCodec
from dotmac_shared.business_logic.console._session import csrf_matches

SECRET = b"s" * 32
codec = SessionCodec(SECRET, max_age=3600)
sessions = st.builds(
    ConsoleSession,
    csrf=st.text(min_size=1, max_size=64),
    issued_at=st.integers(min_value=0, max_value=2**40),
    key_id=st.none() | st.text(alphabet="0123456789abcdef", min_size=16, max_size=16),
)


@given(sessions)
def test_a_cookie_decodes_to_its_session_when_unaltered_and_fresh(session):
    assert codec.decode(codec.encode(session), now=session.issued_at + 3599) == session


@given(sessions, st.data())
def test_a_cookie_is_refused_when_any_character_of_it_is_changed(session, data):
    value = codec.encode(session)
    index = data.draw(st.integers(min_value=0, max_value=len(value) - 1))
    replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c != value[index]))
    forged = value[:index] + replacement + value[index + 1 :]
    assert codec.decode(forged, now=session.issued_at) is None


@given(sessions)
def test_a_cookie_is_refused_when_it_expired_or_another_secret_signed_it(session):
    value = codec.encode(session)
    assert codec.decode(value, now=session.issued_at + 3600) is None
    assert codec.decode(value, now=session.issued_at - 1) is None
    assert SessionCodec(b"t" * 32).decode(value, now=session.issued_at) is None


@pytest.mark.parametrize("value", [None, "", ".", "abc", "abc.def", "x" * 5000, "é.é"])
def test_a_cookie_is_refused_when_it_is_malformed(value):
    assert codec.decode(value, now=0) is None


def test_signing_in_issues_a_new_csrf_token_when_the_session_had_one():
    before = ConsoleSession.anonymous(issued_at=0)
    after = ConsoleSession.signed_in("0123456789abcdef", issued_at=0)
    assert before.csrf != after.csrf and len(after.csrf) >= 43


@pytest.mark.parametrize(
    ("given_token", "matches"), [("tok", True), ("tok2", False), ("", False), (None, False)]
)
def test_a_form_token_matches_only_when_equal_to_the_sessions(given_token, matches):
    assert csrf_matches("tok", given_token) is matches


def test_a_codec_is_refused_when_its_secret_is_short():
    with pytest.raises(ValueError, match="at least 32 bytes"):
        SessionCodec(b"short")


def test_a_platform_key_grants_the_admin_and_operator_roles_too():
    import datetime as dt

    from dotmac_shared.business_logic.http import ApiKeyInfo

    def roles(role: str) -> frozenset[str]:
        return ApiKeyInfo("k", "t", role, None, dt.datetime.now(dt.UTC), None).roles

    assert roles("platform") == {"platform", "admin", "operator"}
    assert roles("admin") == {"admin", "operator"}
    assert roles("operator") == {"operator"}


def test_an_operator_name_fits_a_saga_history_when_the_key_label_is_long():
    import datetime as dt

    from dotmac_shared.business_logic.console import ConsoleUser
    from dotmac_shared.business_logic.http import ApiKeyInfo

    key = ApiKeyInfo("0123456789abcdef", "t", "admin", "n" * 255, dt.datetime.now(dt.UTC), None)
    operator = ConsoleUser.of(key).operator
    assert len(operator) == 255 and operator.startswith("apikey:0123456789abcdef (nnn")
    assert operator.endswith("…)")
