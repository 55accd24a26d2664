"""Every error the HTTP layer answers with is an RFC 9457 problem+json body."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import httpx
import pytest
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError

import dotmac_shared.business_logic.exceptions as exceptions_module
from dotmac_shared.business_logic.exceptions import (
    BusinessLogicError,
    InvalidInputError,
    OperationInProgressError,
    PersistenceError,
    PolicyNotFoundError,
    PolicyViolationError,
    SagaNotFoundError,
)
from dotmac_shared.business_logic.http import (
    DEFAULT_PROBLEM_TYPE_BASE,
    PROBLEM_CONTENT_TYPE,
    PROBLEM_STATUS,
    install_problem_handlers,
    problem_body,
    problem_response,
    problem_status,
)
from dotmac_shared.business_logic.observability._context import correlation_scope

ALL_ERRORS = [
    cls
    for _, cls in inspect.getmembers(exceptions_module, inspect.isclass)
    if issubclass(cls, BusinessLogicError)
]


def make_error(cls: type[BusinessLogicError]) -> BusinessLogicError:
    if cls is PolicyViolationError:
        return cls("denied", policy_name="p", policy_version="1")
    return cls(f"{cls.__name__} happened", correlation_id="corr-1")


def test_http_package_exports_a_sorted_importable_all_when_imported():
    module = importlib.import_module("dotmac_shared.business_logic.http")
    assert list(module.__all__) == sorted(set(module.__all__))
    for name in module.__all__:
        assert hasattr(module, name)


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda cls: cls.__name__)
def test_every_business_error_has_its_own_status_entry_when_mapped(cls):
    assert cls in PROBLEM_STATUS
    assert 400 <= problem_status(make_error(cls)) <= 599


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda cls: cls.__name__)
def test_every_business_error_body_has_the_rfc9457_members_when_rendered(cls):
    body = problem_body(make_error(cls))
    assert body["type"] == f"{DEFAULT_PROBLEM_TYPE_BASE}{cls.code}"
    assert body["status"] == PROBLEM_STATUS[cls]
    assert body["code"] == cls.code
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["correlation_id"]


def test_client_error_body_carries_its_structured_context_when_rendered():
    error = PolicyViolationError(
        "plan not allowed",
        policy_name="plan_eligibility",
        policy_version="2",
        failed_rules=[{"rule": "credit", "reason": "score 400 < 600"}],
        correlation_id="c-7",
    )
    body = problem_body(error)
    assert body["status"] == 422
    assert body["detail"] == "plan not allowed"
    assert body["failed_rules"] == [{"rule": "credit", "reason": "score 400 < 600"}]
    assert body["policy_name"] == "plan_eligibility"
    assert body["correlation_id"] == "c-7"
    assert "error" not in body and "message" not in body


def test_invalid_input_body_names_the_field_when_rendered():
    body = problem_body(InvalidInputError("must be positive", field="amount"))
    assert (body["status"], body["field"], body["code"]) == (422, "amount", "invalid_input")


def test_persistence_error_never_shows_driver_text_when_rendered():
    secret = "SELECT * FROM tenants WHERE password='hunter2'"
    cause = OperationalError(secret, {}, Exception("connection refused to db.internal"))
    error = PersistenceError(f"database error: {cause}", metadata={"statement": secret})
    error.__cause__ = cause
    response = problem_response(error)
    text = response.body.decode()
    assert response.status_code == 503
    assert "hunter2" not in text and "SELECT" not in text and "db.internal" not in text


def test_unknown_exception_is_a_generic_500_when_rendered():
    with correlation_scope("req-42"):
        body = problem_body(RuntimeError("psycopg: password authentication failed for x"))
    assert body["status"] == 500
    assert body["code"] == "internal_error"
    assert "password" not in str(body)
    assert body["correlation_id"] == "req-42"


def test_correlation_id_comes_from_the_request_context_when_the_error_has_none():
    with correlation_scope("req-9"):
        error = SagaNotFoundError("no saga s1")
    assert problem_body(error)["correlation_id"] == "req-9"


def test_type_base_is_configurable_when_given():
    body = problem_body(SagaNotFoundError("x"), type_base="https://errors.example.com/p")
    assert body["type"] == "https://errors.example.com/p/saga_not_found"


def test_in_progress_response_has_retry_after_rounded_up_when_estimated():
    response = problem_response(OperationInProgressError("busy", retry_after=0.05))
    assert response.status_code == 409
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE


class Item(BaseModel):
    quantity: int


def problem_app() -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)

    @app.get("/policies/{name}")
    async def get_policy(name: str) -> dict[str, str]:
        raise PolicyNotFoundError(f"no policy {name!r}", policy_name=name)

    @app.get("/missing")
    async def missing() -> dict[str, str]:
        raise HTTPException(404, "nothing here", headers={"X-Why": "gone"})

    @app.post("/items")
    async def create_item(item: Item) -> Item:
        return item

    @app.get("/boom")
    async def boom() -> dict[str, str]:
        raise RuntimeError("asyncpg: relation secret_table does not exist")

    return app


@pytest.fixture
async def client():
    transport = httpx.ASGITransport(app=problem_app(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http_client:
        yield http_client


async def test_business_error_from_a_route_is_problem_json_with_instance_when_raised(client):
    response = await client.get("/policies/ghost")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    body = response.json()
    assert body["type"].endswith("/policy_not_found")
    assert body["instance"] == "/policies/ghost"
    assert body["policy_name"] == "ghost"


async def test_http_exception_keeps_its_status_detail_and_headers_when_raised(client):
    response = await client.get("/missing")
    assert response.status_code == 404
    assert response.headers["x-why"] == "gone"
    body = response.json()
    assert (body["type"], body["title"], body["detail"]) == (
        "about:blank",
        "Not Found",
        "nothing here",
    )


async def test_unrouted_path_is_a_404_problem_when_requested(client):
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE


async def test_request_validation_error_is_a_422_problem_without_the_input_when_invalid(client):
    response = await client.post("/items", json={"quantity": "secret-not-a-number"})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "request_validation_error"
    assert body["errors"][0]["loc"] == ["body", "quantity"]
    assert "secret-not-a-number" not in response.text


async def test_unexpected_exception_is_a_generic_500_problem_when_raised(client):
    response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    assert "secret_table" not in response.text
    assert response.json()["code"] == "internal_error"


def test_install_rejects_an_object_that_is_not_an_application_when_given():
    with pytest.raises(TypeError):
        install_problem_handlers(object())  # type: ignore[arg-type]


def test_core_package_does_not_import_web_frameworks_when_imported():
    code = (
        "import sys\n"
        "import dotmac_shared.business_logic\n"
        "import dotmac_shared.business_logic.idempotency, dotmac_shared.business_logic.sagas\n"
        "import dotmac_shared.business_logic.policies, dotmac_shared.business_logic.operations\n"
        "loaded = [m for m in ('fastapi', 'starlette', 'uvicorn') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
