from __future__ import annotations

import pytest

from dotmac_shared.business_logic import IllegalSagaTransitionError
from dotmac_shared.business_logic.sagas import SagaStatus, StepStatus
from dotmac_shared.business_logic.sagas._states import (
    SAGA_TRANSITIONS,
    STEP_TRANSITIONS,
    ensure_saga_transition,
    ensure_step_transition,
)

# In the enum's order, not the sets': every pytest-xdist worker must collect the same list.
ALLOWED_SAGA = [(a, b) for a in SagaStatus for b in SagaStatus if b in SAGA_TRANSITIONS[a]]
FORBIDDEN_SAGA = [(a, b) for a in SagaStatus for b in SagaStatus if b not in SAGA_TRANSITIONS[a]]


@pytest.mark.parametrize(("current", "new"), ALLOWED_SAGA)
def test_documented_saga_transitions_are_allowed(current, new):
    ensure_saga_transition("s", current, new)


@pytest.mark.parametrize(("current", "new"), FORBIDDEN_SAGA)
def test_other_saga_transitions_are_refused(current, new):
    with pytest.raises(IllegalSagaTransitionError) as info:
        ensure_saga_transition("s", current, new)
    assert info.value.metadata == {"from": current.value, "to": new.value}


def test_completed_and_compensated_are_final_and_compensation_failed_waits():
    assert SagaStatus.COMPLETED.is_final and SagaStatus.COMPENSATED.is_final
    assert SagaStatus.COMPENSATION_FAILED.is_final and not SagaStatus.COMPENSATION_FAILED.is_active
    assert SAGA_TRANSITIONS[SagaStatus.COMPENSATION_FAILED] == {SagaStatus.COMPENSATING}
    assert SagaStatus.RUNNING.is_active and SagaStatus.COMPENSATING.is_active


@pytest.mark.parametrize(
    ("current", "new"),
    [
        (StepStatus.COMPLETED, StepStatus.RUNNING),
        (StepStatus.COMPENSATED, StepStatus.COMPENSATING),
        (StepStatus.PENDING, StepStatus.COMPLETED),
        (StepStatus.FAILED, StepStatus.COMPLETED),
    ],
)
def test_step_cannot_go_backwards_or_skip(current, new):
    with pytest.raises(IllegalSagaTransitionError):
        ensure_step_transition("s", "x", current, new)


def test_every_status_has_a_transition_entry():
    assert set(SAGA_TRANSITIONS) == set(SagaStatus)
    assert set(STEP_TRANSITIONS) == set(StepStatus)
