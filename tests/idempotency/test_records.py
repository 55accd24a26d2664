"""The pure verdict on a stored record: claim, take over, replay, wait or refuse."""

from __future__ import annotations

import datetime as dt

import pytest

from dotmac_shared.business_logic.clock import ManualClock
from dotmac_shared.business_logic.idempotency import RecordStatus, StoredRecord
from dotmac_shared.business_logic.idempotency._records import Verdict, judge

NOW = ManualClock().now()  # today: no calendar date in a test
OTHER = Verdict.OTHER_OPERATION
SEC = dt.timedelta(seconds=1)


def record(**changes) -> StoredRecord:
    base = StoredRecord(
        tenant_id="t",
        key="k",
        operation_type="op",
        payload_hash="h",
        status=RecordStatus.IN_PROGRESS,
        attempts=1,
        lease_owner="w1",
        lease_expires_at=NOW + 10 * SEC,
        expires_at=NOW + 3600 * SEC,
        created_at=NOW - SEC,
    )
    return base.evolve(**changes)


@pytest.mark.parametrize(
    ("found", "payload_hash", "verdict"),
    [
        (None, "h", Verdict.CLAIM),
        (record(), "h", Verdict.IN_PROGRESS),
        (record(), "other", Verdict.MISMATCH),
        (record(lease_expires_at=NOW), "h", Verdict.TAKE_OVER),
        (record(lease_expires_at=None), "h", Verdict.TAKE_OVER),
        (record(status=RecordStatus.COMPLETED, lease_expires_at=None), "h", Verdict.REPLAY),
        (record(status=RecordStatus.FAILED, lease_expires_at=None), "h", Verdict.REPLAY),
        (record(status=RecordStatus.COMPLETED), "other", Verdict.MISMATCH),
        (record(status=RecordStatus.COMPLETED, expires_at=NOW), "other", Verdict.TAKE_OVER),
        (record(expires_at=NOW - SEC), "h", Verdict.TAKE_OVER),
    ],
)
def test_verdict_follows_the_record_when_judged(found, payload_hash, verdict):
    assert judge(found, payload_hash, NOW) is verdict


@pytest.mark.parametrize(
    ("found", "payload_hash", "verdict"),
    [
        (record(), "h", OTHER),
        (record(), "other", OTHER),  # the operation is refused first
        (
            record(status=RecordStatus.COMPLETED, lease_expires_at=None),
            "h",
            Verdict.OTHER_OPERATION,
        ),
        (record(expires_at=NOW), "h", Verdict.TAKE_OVER),  # expired: free for any operation
    ],
)
def test_verdict_is_other_operation_when_the_key_was_used_for_another_operation(
    found, payload_hash, verdict
):
    assert judge(found, payload_hash, NOW, "another_op") is verdict
    assert judge(found.evolve(operation_type="another_op"), "h", NOW, "another_op") in {
        Verdict.IN_PROGRESS,
        Verdict.REPLAY,
        Verdict.TAKE_OVER,
    }


def test_evolve_copies_with_changes_when_fields_are_named():
    base = record()
    changed = base.evolve(status=RecordStatus.COMPLETED, result={"a": 1}, lease_expires_at=None)
    assert changed == StoredRecord(
        **{
            **{name: getattr(base, name) for name in base.__slots__},
            "status": RecordStatus.COMPLETED,
            "result": {"a": 1},
            "lease_expires_at": None,
        }
    )
    assert base.status is RecordStatus.IN_PROGRESS and base.result is None


def test_evolve_refuses_when_a_field_does_not_exist():
    with pytest.raises(TypeError, match="no field"):
        record().evolve(statuss=RecordStatus.COMPLETED)
