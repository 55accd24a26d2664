"""The saga list's filters: parsed from a query string and written back (pure)."""

from __future__ import annotations

import datetime as dt
import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dotmac_shared.business_logic.console._forms import SagaFilters, parse_json_object
from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.sagas import SagaStatus

names = st.none() | st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=40,
)
minutes = st.none() | st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1)
).map(lambda t: t.replace(second=0, microsecond=0, tzinfo=dt.UTC))
filters = st.builds(
    SagaFilters,
    name=names,
    status=st.none() | st.sampled_from(SagaStatus),
    tenant=names,
    created_from=minutes,
    created_to=minutes,
    limit=st.integers(min_value=1, max_value=200),
    cursor=st.none() | st.text(alphabet="abcdefXYZ0123456789-_", min_size=1, max_size=30),
)


@given(filters)
def test_filters_survive_the_query_string_when_written_and_parsed_back(wanted):
    query = dict(urllib.parse.parse_qsl(wanted.query(cursor=wanted.cursor)))
    assert SagaFilters.parse(query) == wanted


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"status": "sleeping"}, "status"),
        ({"from": "last tuesday"}, "from"),
        ({"to": "2026-13-01T00:00"}, "to"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"tenant": "t" * 256}, "tenant"),
    ],
)
def test_a_filter_is_refused_naming_its_field_when_malformed(query, field):
    with pytest.raises(InvalidInputError) as caught:
        SagaFilters.parse(query)
    assert caught.value.field == field


def test_a_time_filter_is_utc_when_it_names_no_offset():
    parsed = SagaFilters.parse({"from": "2030-01-02T03:04", "to": "2030-01-02T05:04+02:00"})
    assert parsed.created_from == dt.datetime(2030, 1, 2, 3, 4, tzinfo=dt.UTC)
    assert parsed.created_to == dt.datetime(2030, 1, 2, 3, 4, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "input is required"), ("[1]", "must be a JSON object"), ("{", "line 1, column 2")],
)
def test_an_evaluation_input_is_refused_when_it_is_not_a_json_object(text, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_json_object("input", text, required=True)
