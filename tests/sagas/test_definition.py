from __future__ import annotations

import pytest

from dotmac_shared.business_logic import SagaDefinitionError
from dotmac_shared.business_logic.sagas import RetryPolicy, SagaDefinition, SagaStep


async def noop(ctx):
    return {}


class Handler:
    async def execute(self, ctx):
        return {"a": 1}

    async def compensate(self, ctx):
        return None


def test_class_with_execute_and_compensate_is_a_step():
    step = SagaStep(name="handled", execute=Handler())
    assert step.compensable and callable(step.action)


@pytest.mark.parametrize("name", ["", "Bad", "has space", "x" * 200, None])
def test_bad_step_names_are_refused(name):
    with pytest.raises(SagaDefinitionError):
        SagaStep(name=name, execute=noop)


def test_duplicate_step_names_are_refused():
    with pytest.raises(SagaDefinitionError, match="duplicate"):
        SagaDefinition(name="s", steps=[SagaStep(name="a", execute=noop)] * 2)


@pytest.mark.parametrize(
    "kwargs",
    [{"steps": []}, {"steps": ["not a step"]}, {"name": "Bad Name"}, {"timeout": 0}],
)
def test_malformed_definitions_are_refused(kwargs):
    base = {"name": "s", "steps": [SagaStep(name="a", execute=noop)]}
    with pytest.raises(SagaDefinitionError):
        SagaDefinition(**{**base, **kwargs})


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"initial_delay": -1}, {"jitter": -0.1}])
def test_bad_retry_policies_are_refused(kwargs):
    with pytest.raises(SagaDefinitionError):
        RetryPolicy(**kwargs)


def test_negative_step_timeout_and_non_callable_are_refused():
    with pytest.raises(SagaDefinitionError):
        SagaStep(name="a", execute=noop, timeout=-1)
    with pytest.raises(SagaDefinitionError):
        SagaStep(name="a", execute="not callable")  # type: ignore[arg-type]
