"""The JSON codec: canonical for hashing, round-trip for results, clear errors otherwise."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections import OrderedDict
from decimal import Decimal
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dotmac_shared.business_logic import ResultSerializationError
from dotmac_shared.business_logic.idempotency import canonical_json, decode_result, encode_result

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.datetimes(timezones=st.just(dt.UTC)),
    st.dates(),
    st.uuids(),
)
keys = st.text().filter(lambda k: not k.startswith("$"))
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4)
)


@given(st.dictionaries(keys, values, max_size=6))
def test_result_round_trips_when_it_holds_decimals_datetimes_and_uuids(result):
    assert decode_result(encode_result(result)) == result


@given(st.dictionaries(keys, values, max_size=6))
def test_canonical_json_ignores_key_order_when_dicts_are_equal(data):
    reordered = dict(reversed(list(data.items())))
    assert canonical_json(data) == canonical_json(reordered)


def test_equal_ints_and_floats_encode_equally_when_hashed():
    assert canonical_json({"a": 1}) == canonical_json({"a": 1.0})
    assert canonical_json({"a": Decimal("1.50")}) == canonical_json({"a": Decimal("1.5")})
    assert canonical_json({"a": Decimal("1.5")}) != canonical_json({"a": 1.5})


def test_tuples_round_trip_as_lists_when_encoded():
    assert decode_result(encode_result({"t": (1, "a")})) == {"t": [1, "a"]}


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"a": {"b": {1, 2}}}, "a.b"),
        ({"a": [1, b"raw"]}, r"a\[1\]"),
        ({"a": float("nan")}, "a"),
        ({"a": Decimal("Infinity")}, "a"),
        ({"a": {1: "x"}}, "a"),
        ({"a": {"$decimal": "1"}}, "a"),
        ({"a": dt.datetime(2026, 1, 1)}, "a"),  # noqa: DTZ001 - a naive datetime on purpose
        ({"a": object()}, "a"),
    ],
)
def test_unencodable_value_names_its_path_when_encoded(value, where):
    with pytest.raises(ResultSerializationError, match=f"at {where}:"):
        encode_result(value)


def test_uuid_and_date_are_tagged_when_encoded():
    u = uuid.UUID(int=7)
    assert encode_result({"u": u, "d": dt.date(2026, 11, 25)}) == {
        "u": {"$uuid": str(u)},
        "d": {"$date": "2026-11-25"},
    }


def test_payload_dict_never_hashes_like_a_tagged_value_when_it_uses_a_tag_key():
    assert canonical_json({"a": {"$date": "2026-11-25"}}) != canonical_json(
        {"a": dt.date(2026, 11, 25)}
    )


class Colour(enum.StrEnum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


@pytest.mark.parametrize(
    ("subclassed", "plain"),
    [
        (OrderedDict(b=1, a=[2]), {"a": [2], "b": 1}),
        (MappingProxyType({"a": 1}), {"a": 1}),
        ({"c": Colour.RED, "l": Level.HIGH}, {"c": "red", "l": 3}),
    ],
)
def test_subclasses_encode_like_their_base_types_when_hashed_or_stored(subclassed, plain):
    assert canonical_json({"x": subclassed}) == canonical_json({"x": plain})
    assert encode_result({"x": subclassed}) == {"x": plain}


def test_unencodable_value_in_a_mapping_subclass_names_its_path_when_encoded():
    with pytest.raises(ResultSerializationError, match=r"at x\.items\[0\]\.b:"):
        encode_result({"x": OrderedDict(items=[MappingProxyType({"b": {1}})])})
