"""page_sagas: filters and keyset paging over (created_at, saga_id), newest first, per tenant."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from dataclasses import dataclass

import hypothesis.strategies as st
import pytest
from hypothesis import given

from dotmac_shared.business_logic import ALL_TENANTS, InvalidInputError
from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.sagas import (
    SagaContext,
    SagaCoordinator,
    SagaDefinition,
    SagaPage,
    SagaStatus,
    SagaStep,
    SqlSagaStore,
)
from dotmac_shared.business_logic.sagas._cursor import decode_cursor, encode_cursor

TENANT = "tenant-pages"
OTHER = "tenant-other"


async def succeed(ctx):
    return {"done": True}


async def fail(ctx):
    raise RuntimeError("declined")


async def undo(ctx):
    return None


@dataclass(frozen=True)
class Made:
    saga_id: str
    name: str
    status: SagaStatus
    tenant_id: str | None
    created_at: dt.datetime


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def coordinator(session_factory, clock) -> SagaCoordinator:
    coordinator = SagaCoordinator(session_factory, clock=clock)
    coordinator.register_saga(SagaDefinition(name="charge", steps=[SagaStep("charge", succeed)]))
    coordinator.register_saga(
        SagaDefinition(name="refund", steps=[SagaStep("refund", fail, compensate=undo)])
    )
    return coordinator


async def make(
    coordinator: SagaCoordinator, clock: ManualClock, name: str, tenant: str | None
) -> Made:
    saga_id = str(uuid.uuid4())
    created_at = clock.now()
    result = await coordinator.execute_saga(name, SagaContext(saga_id=saga_id, tenant_id=tenant))
    return Made(saga_id, name, result.status, tenant, created_at)


async def make_many(
    coordinator: SagaCoordinator, clock: ManualClock, count: int, *, ties: int, tenant=TENANT
) -> list[Made]:
    """``count`` sagas, ``ties`` at a time sharing one creation time (the clock stands still)."""
    made = []
    for i in range(count):
        if i and i % ties == 0:
            clock.advance(microseconds=1)  # the smallest step both databases keep
        made.append(await make(coordinator, clock, "charge" if i % 3 else "refund", tenant))
    return made


def newest_first(made: list[Made]) -> list[str]:
    return [m.saga_id for m in sorted(made, key=lambda m: (m.created_at, m.saga_id), reverse=True)]


async def all_pages(
    coordinator: SagaCoordinator, cursor: str | None = None, **query
) -> list[SagaPage]:
    pages = [await coordinator.page_sagas(**query, cursor=cursor)]
    while pages[-1].next_cursor is not None:
        pages.append(await coordinator.page_sagas(**query, cursor=pages[-1].next_cursor))
        assert len(pages) < 1_000, "paging does not end"
    return pages


def ids(pages: list[SagaPage]) -> list[str]:
    return [item.saga_id for page in pages for item in page.items]


@pytest.mark.parametrize("limit", [1, 4, 7, 40])
async def test_every_saga_comes_once_newest_first_when_paging_through_ties(
    coordinator, clock, limit
):
    made = await make_many(coordinator, clock, 23, ties=5)
    pages = await all_pages(coordinator, tenant_id=TENANT, limit=limit)
    assert ids(pages) == newest_first(made)
    assert all(len(page.items) == limit for page in pages[:-1])
    assert 1 <= len(pages[-1].items) <= limit and pages[-1].next_cursor is None


async def test_filters_combine_when_paging_with_all_of_them(coordinator, clock):
    made = await make_many(coordinator, clock, 30, ties=4)
    await make_many(coordinator, clock, 5, ties=2, tenant=OTHER)
    times = sorted({m.created_at for m in made})
    since, until = times[1], times[-2]
    query = {
        "tenant_id": TENANT,
        "saga_name": "charge",
        "status": "completed",
        "created_after": since,
        "created_before": until,
    }
    pages = await all_pages(coordinator, **query, limit=3)
    expected = [
        m
        for m in made
        if m.name == "charge" and m.status is SagaStatus.COMPLETED and since <= m.created_at < until
    ]
    assert len(expected) > 6  # several pages, and the filters removed sagas at both ends
    assert ids(pages) == newest_first(expected)
    for item in (item for page in pages for item in page.items):
        assert item.saga_name == "charge" and item.status is SagaStatus.COMPLETED
        assert since <= item.created_at < until and item.tenant_id == TENANT
    # A failed saga's row says why; the same filters select it by name and status.
    refunds = await all_pages(coordinator, tenant_id=TENANT, saga_name="refund", limit=100)
    assert {item.status for item in refunds[0].items} == {SagaStatus.COMPENSATED}
    assert all(item.error is not None for item in refunds[0].items)


async def test_a_page_goes_on_where_the_last_stopped_when_sagas_were_created_meanwhile(
    coordinator, clock
):
    made = await make_many(coordinator, clock, 9, ties=3)
    first = await coordinator.page_sagas(tenant_id=TENANT, limit=4)
    clock.advance(seconds=1)
    newer = await make_many(coordinator, clock, 3, ties=3)
    rest = await all_pages(coordinator, tenant_id=TENANT, limit=4, cursor=first.next_cursor)
    assert ids([first, *rest]) == newest_first(made)
    assert not {m.saga_id for m in newer} & set(ids(rest))


async def test_each_tenant_pages_through_its_own_sagas_only_when_tenants_share_the_table(
    coordinator, clock
):
    ours = await make_many(coordinator, clock, 7, ties=3)
    theirs = await make_many(coordinator, clock, 6, ties=2, tenant=OTHER)
    untenanted = await make_many(coordinator, clock, 2, ties=2, tenant=None)
    assert ids(await all_pages(coordinator, tenant_id=TENANT, limit=2)) == newest_first(ours)
    assert ids(await all_pages(coordinator, tenant_id=OTHER, limit=2)) == newest_first(theirs)
    assert ids(await all_pages(coordinator, tenant_id=None, limit=2)) == newest_first(untenanted)
    everyone = await all_pages(coordinator, tenant_id=ALL_TENANTS, limit=4)
    assert ids(everyone) == newest_first(ours + theirs + untenanted)
    # A cursor is only a position: used by another tenant it pages that tenant's sagas.
    first = await coordinator.page_sagas(tenant_id=TENANT, limit=1)
    elsewhere = await all_pages(coordinator, tenant_id=OTHER, limit=10, cursor=first.next_cursor)
    assert set(ids(elsewhere)) <= {m.saga_id for m in theirs}
    with pytest.raises(InvalidInputError) as caught:
        await coordinator.page_sagas(tenant_id=42)
    assert caught.value.field == "tenant_id"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "",
        _b64(b"not json"),
        _b64(json.dumps({"created": "x"}).encode()),
        _b64(json.dumps(["2026-01-01T00:00:00", "naive"]).encode()),
        _b64(json.dumps(["yesterday", "saga"]).encode()),
        _b64(json.dumps([1, 2]).encode()),
        _b64(json.dumps(["2026-01-01T00:00:00+00:00", "a", "b"]).encode()),
        "A" * 10_000,
    ],
)
async def test_a_malformed_cursor_is_invalid_input_when_given(coordinator, cursor):
    with pytest.raises(InvalidInputError) as caught:
        await coordinator.page_sagas(tenant_id=TENANT, cursor=cursor)
    assert caught.value.field == "cursor"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"created_after": dt.datetime(2000, 1, 1)}, "created_after"),  # noqa: DTZ001 - naive
        ({"created_before": "2000-01-01T00:00:00Z"}, "created_before"),
        ({"limit": 0}, "limit"),
        ({"status": "sleeping"}, "status"),
        ({"saga_name": 7}, "saga_name"),
    ],
)
async def test_a_bad_filter_is_invalid_input_when_given(coordinator, query, field):
    with pytest.raises(InvalidInputError) as caught:
        await coordinator.page_sagas(tenant_id=TENANT, **query)
    assert caught.value.field == field


async def test_list_sagas_takes_the_same_filters_when_asked(coordinator, clock):
    made = await make_many(coordinator, clock, 6, ties=2)
    listed = await coordinator.list_sagas(tenant_id=TENANT, saga_name="refund", limit=10)
    assert [s.saga_id for s in listed] == newest_first([m for m in made if m.name == "refund"])
    assert all(s.completed_at is not None for s in listed)


async def test_store_pages_by_position_when_asked_directly(session_factory, coordinator, clock):
    made = await make_many(coordinator, clock, 5, ties=5)
    store = SqlSagaStore(session_factory)
    order = newest_first(made)
    head = await store.page(tenant_id=TENANT, limit=2)
    assert [r.saga_id for r in head] == order[:2]
    tail = await store.page(
        tenant_id=TENANT, limit=10, after=(head[-1].created_at, head[-1].saga_id)
    )
    assert [r.saga_id for r in tail] == order[2:]


async def test_a_page_is_json_when_converted(coordinator, clock):
    await make_many(coordinator, clock, 3, ties=1)
    page = await coordinator.page_sagas(tenant_id=TENANT, limit=2)
    data = json.loads(json.dumps(page.to_dict()))
    assert [item["saga_id"] for item in data["items"]] == [i.saga_id for i in page.items]
    assert page.next_cursor is not None and data["next_cursor"] == page.next_cursor
    assert data["items"][0]["status"] in {"completed", "compensated"}


OFFSETS = st.sampled_from(
    [dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(-dt.timedelta(hours=8))]
)


@given(
    created_at=st.datetimes(
        min_value=dt.datetime(1970, 1, 2),  # noqa: DTZ001 - bounds are naive by hypothesis' API
        max_value=dt.datetime(9998, 12, 30),  # noqa: DTZ001
        timezones=OFFSETS,
    ),
    saga_id=st.text(max_size=64),
)
def test_a_cursor_names_the_position_it_was_made_from_when_decoded(created_at, saga_id):
    when, decoded_id = decode_cursor(encode_cursor(created_at, saga_id))
    assert when == created_at.astimezone(dt.UTC) and when.tzinfo is not None
    assert decoded_id == saga_id


@given(cursor=st.text(max_size=600) | st.binary(max_size=300).map(_b64))
def test_any_text_is_a_position_or_invalid_input_when_decoded_as_a_cursor(cursor):
    try:
        when, saga_id = decode_cursor(cursor)
    except InvalidInputError as exc:
        assert exc.field == "cursor"
    else:
        assert when.tzinfo is not None and isinstance(saga_id, str)
