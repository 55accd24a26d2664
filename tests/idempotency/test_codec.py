"""The JSON codec: canonical for hashing, round-trip for results, clear errors otherwise."""

from __future__ import annotations

import datetime as dt
import enum
import json
import uuid
from collections import OrderedDict
from decimal import Decimal
from types import MappingProxyType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dotmac_shared.business_logic import InvalidInputError, ResultSerializationError
from dotmac_shared.business_logic.idempotency import IdempotencyKey, canonical_json
from dotmac_shared.business_logic.idempotency._codec import MAX_DEPTH, decode_result, encode_result

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
def test_result_round_trips_when_it_was_stored_as_json_text(result):
    # What a store gives back: the JSON types a decoder builds, decoded without copies.
    stored = json.loads(json.dumps(encode_result(result)))
    assert decode_result(stored) == result


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


# -- deep and odd inputs: a documented error naming where, never RecursionError -------------

ODD_LEAVES = [
    float("nan"),
    float("inf"),
    b"raw",
    frozenset({1}),
    object(),
    dt.datetime.now(),  # noqa: DTZ005 - a naive datetime on purpose
    Decimal("NaN"),
]
CONTAINERS = ["dict", "list", "tuple", "proxy"]


def wrap(kind: str, value: object) -> tuple[object, str]:
    """``value`` inside one container of ``kind``, and the path step that leads to it."""
    if kind == "dict":
        return {"x": value}, ".x"
    if kind == "proxy":
        return MappingProxyType({"x": value}), ".x"
    return ([value] if kind == "list" else (value,)), "[0]"


@st.composite
def nested(draw: st.DrawFn) -> tuple[dict, int, str, bool]:
    """A mapping ``depth`` containers deep (itself included) around one leaf, good or odd."""
    depth = draw(st.integers(1, 3 * MAX_DEPTH))
    kinds = draw(st.lists(st.sampled_from(CONTAINERS), min_size=depth - 1, max_size=depth - 1))
    odd = draw(st.booleans())
    value = draw(st.sampled_from(ODD_LEAVES) if odd else scalars)
    steps = []
    for kind in reversed(kinds):
        value, step = wrap(kind, value)
        steps.append(step)
    return {"k": value}, depth, "k" + "".join(reversed(steps)), odd


@settings(max_examples=100, deadline=None)
@given(nested())
def test_deep_or_odd_value_is_encoded_or_refused_by_path_when_nested_any_depth(case):
    value, depth, path, odd = case
    if depth > MAX_DEPTH:
        for encode in (encode_result, canonical_json):
            with pytest.raises(ResultSerializationError, match=f"more than {MAX_DEPTH} levels"):
                encode(value)
    elif odd:
        for encode in (encode_result, canonical_json):
            with pytest.raises(ResultSerializationError) as caught:
                encode(value)
            assert caught.value.metadata["path"] == path
    else:
        encoded = encode_result(value)
        assert encode_result(decode_result(encoded)) == encoded
        assert canonical_json(value) == canonical_json(decode_result(encoded))


@settings(max_examples=100, deadline=None)
@given(
    kinds=st.lists(st.sampled_from(["dict", "list"]), min_size=1, max_size=8),
    data=st.data(),
)
def test_value_that_contains_itself_is_refused_where_the_cycle_closes_when_encoded(kinds, data):
    containers: list[dict | list] = [{} if kind == "dict" else [] for kind in kinds]
    path = "k"
    for outer, inner in zip(containers, containers[1:], strict=False):
        if isinstance(outer, dict):
            outer["x"] = inner
            path += ".x"
        else:
            outer.append(inner)
            path += "[0]"
    # The innermost container holds one of those around it (perhaps itself).
    target = data.draw(st.sampled_from(containers))
    innermost = containers[-1]
    if isinstance(innermost, dict):
        innermost["back"] = target
        path += ".back"
    else:
        innermost.append(target)
        path += f"[{len(innermost) - 1}]"
    value = {"k": containers[0]}
    for encode in (encode_result, canonical_json):
        with pytest.raises(ResultSerializationError, match="contains itself") as caught:
            encode(value)
        assert caught.value.metadata["path"] == path


def test_payload_is_refused_not_recursed_when_it_is_nested_far_past_the_limit():
    deep: list = []
    for _ in range(50_000):  # far past Python's recursion limit too
        deep = [deep]
    with pytest.raises(InvalidInputError, match=f"more than {MAX_DEPTH} levels"):
        IdempotencyKey.generate("refund", "t1", {"items": deep})
    looped: dict = {"id": "x"}
    looped["self"] = looped
    with pytest.raises(InvalidInputError, match="at self: the value contains itself"):
        IdempotencyKey.from_client(
            "k", operation_type="refund", tenant_id="t1", operation_data=looped
        )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), object(), {1, 2}])
def test_payload_value_the_codec_cannot_encode_is_the_callers_error_when_keyed(bad):
    with pytest.raises(
        InvalidInputError, match="operation_data cannot encode value at a"
    ) as caught:
        IdempotencyKey.generate("refund", "t1", {"a": bad})
    assert caught.value.field == "operation_data"
    assert caught.value.metadata["path"] == "a"
