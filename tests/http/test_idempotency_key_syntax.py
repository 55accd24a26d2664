"""The Idempotency-Key field value: a Structured Field String (RFC 8941), or a bare token."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from dotmac_shared.business_logic.http import IdempotencyKeyInvalidError, parse_idempotency_key

PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
TCHAR = "!#$%&'*+-.^_`|~:/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def serialize(key: str) -> str:
    """RFC 8941 section 4.1.6: escape backslash and double quote, wrap in double quotes."""
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


keys = st.text(PRINTABLE, min_size=1, max_size=255).filter(lambda key: key.strip())
tokens = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ*"),
    st.text(st.sampled_from(TCHAR), max_size=100),
)


@given(keys)
@example('a"b\\c')
def test_serialized_string_parses_back_to_its_key_when_valid(key):
    assert parse_idempotency_key(serialize(key)) == key


@given(keys, st.sampled_from(["", " ", "  ", "\t"]), st.sampled_from(["", " ", "\t"]))
def test_surrounding_whitespace_is_ignored_when_present(key, before, after):
    assert parse_idempotency_key(before + serialize(key) + after) == key


@given(keys, st.sampled_from([";v=1", ";a", ';x=?1;y="z"', "; p=token"]))
def test_parameters_are_ignored_when_present(key, parameters):
    assert parse_idempotency_key(serialize(key) + parameters) == key


@given(tokens)
def test_bare_token_is_its_own_key_when_sent_unquoted(token):
    assert parse_idempotency_key(token) == token


@given(keys, st.characters(codec="utf-8").filter(lambda c: not 0x20 <= ord(c) <= 0x7E))
def test_string_with_a_character_outside_printable_ascii_is_invalid_when_sent(key, bad):
    value = serialize(key[: len(key) // 2] + bad + key[len(key) // 2 :])
    with pytest.raises(IdempotencyKeyInvalidError):
        parse_idempotency_key(value)


@given(keys, st.sampled_from(["a", "n", "x", "'", " "]))
def test_escape_of_anything_but_quote_or_backslash_is_invalid_when_sent(key, escaped):
    with pytest.raises(IdempotencyKeyInvalidError):
        parse_idempotency_key(serialize(key)[:-1] + "\\" + escaped + '"')


@given(keys)
def test_unterminated_or_unopened_string_is_invalid_when_sent(key):
    for value in (serialize(key)[:-1], serialize(key)[1:], serialize(key) + '"'):
        with pytest.raises(IdempotencyKeyInvalidError):
            parse_idempotency_key(value)


@given(st.text(PRINTABLE, min_size=256, max_size=400).filter(lambda key: key.strip()))
def test_key_longer_than_255_characters_is_invalid_when_sent(key):
    with pytest.raises(IdempotencyKeyInvalidError):
        parse_idempotency_key(serialize(key))


@pytest.mark.parametrize(
    "value", ["", '""', '"   "', "1abc", "-", "two tokens", '"a", "b"', "(x)", "?1", "12"]
)
def test_value_that_is_neither_a_string_nor_a_token_is_invalid_when_sent(value):
    with pytest.raises(IdempotencyKeyInvalidError):
        parse_idempotency_key(value)
