from __future__ import annotations

import inspect
import logging

import pytest

from dotmac_shared.business_logic import BusinessLogicError, ErrorSeverity, InvalidInputError
from dotmac_shared.standard_exception_handler import standard_exception_handler

LOGGER = "dotmac_shared.business_logic.errors"


@standard_exception_handler
def add(a: int, b: int = 1) -> int:
    """Add numbers."""
    return a + b


@standard_exception_handler
async def fetch(x: str) -> str:
    """Fetch something."""
    return x.upper()


def test_returns_the_value_and_keeps_signature_when_nothing_fails():
    assert add(1, 2) == 3
    assert add.__name__ == "add" and add.__doc__ == "Add numbers."
    assert list(inspect.signature(add).parameters) == ["a", "b"]
    assert inspect.signature(add).parameters["b"].default == 1


async def test_async_function_stays_a_coroutine_function_and_returns_its_value():
    assert inspect.iscoroutinefunction(fetch)
    assert await fetch("a") == "A"
    assert fetch.__name__ == "fetch"


def test_business_error_is_reraised_unchanged_and_logged_once_with_context(caplog):
    original = InvalidInputError("bad domain", field="domain", tenant_id="t1")

    @standard_exception_handler
    def inner() -> None:
        raise original

    @standard_exception_handler
    def outer() -> None:
        inner()

    with caplog.at_level(logging.DEBUG, logger=LOGGER), pytest.raises(InvalidInputError) as info:
        outer()
    assert info.value is original
    records = [r for r in caplog.records if r.name == LOGGER]
    assert len(records) == 1
    assert records[0].error["tenant_id"] == "t1"  # type: ignore[attr-defined]
    assert records[0].error["field"] == "domain"  # type: ignore[attr-defined]


def test_other_exception_is_wrapped_with_cause_and_logged_with_traceback_when_sync(caplog):
    @standard_exception_handler
    def broken() -> None:
        raise KeyError("missing")

    with caplog.at_level(logging.DEBUG, logger=LOGGER), pytest.raises(BusinessLogicError) as info:
        broken()
    assert isinstance(info.value.__cause__, KeyError)
    assert info.value.severity is ErrorSeverity.HIGH
    assert "broken" in (info.value.operation or "")
    (record,) = [r for r in caplog.records if r.name == LOGGER]
    assert record.exc_info is not None and record.exc_info[0] is KeyError


async def test_other_exception_is_wrapped_with_cause_when_async(caplog):
    @standard_exception_handler
    async def broken() -> None:
        raise ValueError("nope")

    with caplog.at_level(logging.DEBUG, logger=LOGGER), pytest.raises(BusinessLogicError) as info:
        await broken()
    assert isinstance(info.value.__cause__, ValueError)
    assert "nope" in info.value.message
    assert len([r for r in caplog.records if r.name == LOGGER]) == 1


async def test_business_error_passes_through_unchanged_when_async():
    err = BusinessLogicError("x")

    @standard_exception_handler
    async def raiser() -> None:
        raise err

    with pytest.raises(BusinessLogicError) as info:
        await raiser()
    assert info.value is err and info.value.__cause__ is None


@pytest.mark.parametrize("status", [404, 401])
async def test_web_framework_http_exception_passes_through_untouched_when_raised(caplog, status):
    from starlette.exceptions import HTTPException

    @standard_exception_handler
    async def endpoint() -> None:
        raise HTTPException(status_code=status, detail="nope")

    with caplog.at_level(logging.DEBUG, logger=LOGGER), pytest.raises(HTTPException) as info:
        await endpoint()
    assert info.value.status_code == status
    assert not [r for r in caplog.records if r.name == LOGGER]


def test_subclass_of_a_framework_exception_passes_through_when_sync():
    from starlette.exceptions import HTTPException

    class NotFound(HTTPException):
        pass

    @standard_exception_handler
    def endpoint() -> None:
        raise NotFound(status_code=404)

    with pytest.raises(NotFound):
        endpoint()


def test_exception_type_given_to_pass_through_is_not_wrapped_when_raised():
    from dotmac_shared.standard_exception_handler import pass_through

    class Redirect(Exception):
        pass

    pass_through(Redirect)

    @standard_exception_handler
    def endpoint() -> None:
        raise Redirect("/elsewhere")

    with pytest.raises(Redirect):
        endpoint()
    with pytest.raises(TypeError, match="exception types"):
        pass_through("not a type")  # type: ignore[arg-type]
