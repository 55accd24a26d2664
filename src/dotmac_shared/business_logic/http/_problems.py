"""RFC 9457 Problem Details for every error the HTTP layer can answer with.

Each :class:`~dotmac_shared.business_logic.exceptions.BusinessLogicError` subclass maps to one
HTTP status (:data:`PROBLEM_STATUS`, looked up along the class's MRO so a subclass without an
entry inherits its parent's) and to an ``application/problem+json`` body::

    {
      "type": "https://dotmac.dev/problems/policy_not_found",   # base + the error's stable code
      "title": "Policy not found",
      "status": 404,
      "detail": "no policy named 'x'",
      "instance": "/v1/policies/x/evaluate",
      "code": "policy_not_found",
      "correlation_id": "4bf9...",
      "policy_name": "x", ...                                     # the error's structured context
    }

A :class:`SagaCompensatedError` (a provisioning saga that failed and was undone) answers with
its failure's stable code as ``type`` and ``code``, the status of that code
(:func:`compensated_saga_status`: 422 for invalid input or a refusal by a business rule, 502 or
504 for a system the saga drives) and the failure's ``step`` and ``context`` beside the saga's
id. An :class:`AuthenticationError` (401) carries its ``WWW-Authenticate`` challenge.

Other server errors (5xx) carry only the generic members: their messages and context are
written for operators, not callers. A :class:`PersistenceError` and any exception that is not a
``BusinessLogicError`` never show their text at all, so driver or SQL text cannot leak; they are
logged with the correlation id instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from dotmac_shared.business_logic.exceptions import (
    AuthenticationError,
    BillingRunError,
    BusinessLogicError,
    IdempotencyError,
    IdempotencyLeaseLostError,
    IdempotencyPayloadMismatchError,
    IdempotencyResultNotSavedError,
    IdempotencyRetriesExhaustedError,
    IllegalSagaTransitionError,
    InvalidInputError,
    NotificationDeliveryError,
    OperationInProgressError,
    PermissionDeniedError,
    PersistenceError,
    PolicyDefinitionError,
    PolicyError,
    PolicyNotFoundError,
    PolicyViolationError,
    ProvisioningError,
    ProvisioningRefusedError,
    ResourceNotFoundError,
    ResultSerializationError,
    SagaCompensatedError,
    SagaConflictError,
    SagaDefinitionError,
    SagaError,
    SagaLeaseLostError,
    SagaNotFoundError,
    SagaRepairRefusedError,
    SagaTimeoutError,
    SchemaVersionError,
)
from dotmac_shared.business_logic.http._errors import (
    IdempotencyKeyInvalidError,
    IdempotencyKeyMissingError,
    RequestBodyTooLargeError,
)
from dotmac_shared.business_logic.observability._context import get_correlation_id
from dotmac_shared.business_logic.observability._log import get_logger

__all__ = [
    "DEFAULT_PROBLEM_TYPE_BASE",
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_STATUS",
    "ProblemResponse",
    "compensated_saga_status",
    "install_problem_handlers",
    "problem_body",
    "problem_response",
    "problem_status",
]

PROBLEM_CONTENT_TYPE: Final = "application/problem+json"
DEFAULT_PROBLEM_TYPE_BASE: Final = "https://dotmac.dev/problems/"

#: The HTTP status of each error class; a class without an entry takes its nearest parent's.
PROBLEM_STATUS: Final[Mapping[type[BusinessLogicError], int]] = {
    BusinessLogicError: 500,
    InvalidInputError: 422,
    # Sent with `WWW-Authenticate` (the error's challenge).
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    # Also another tenant's resource: never revealed to exist.
    ResourceNotFoundError: 404,
    # Retryable from the caller's point of view: the database is down or overloaded.
    PersistenceError: 503,
    # The database was made by another schema history: an operator must act, not the caller.
    SchemaVersionError: 503,
    PolicyError: 500,
    PolicyDefinitionError: 500,
    PolicyNotFoundError: 404,
    PolicyViolationError: 422,
    IdempotencyError: 500,
    OperationInProgressError: 409,
    IdempotencyPayloadMismatchError: 422,
    IdempotencyRetriesExhaustedError: 503,
    # The lease ran out and another request took the key over: retry to get its outcome.
    IdempotencyLeaseLostError: 409,
    IdempotencyResultNotSavedError: 503,
    ResultSerializationError: 500,
    SagaError: 500,
    SagaDefinitionError: 500,
    SagaNotFoundError: 404,
    SagaTimeoutError: 504,
    SagaLeaseLostError: 409,
    SagaConflictError: 409,
    SagaRepairRefusedError: 409,
    IllegalSagaTransitionError: 409,
    # The status of a compensated saga is its failure's (`compensated_saga_status`); this
    # one is for a failure whose code names no error class.
    SagaCompensatedError: 502,
    # A downstream system (database schema, licensing, network) refused or failed.
    ProvisioningError: 502,
    # The request broke a business rule (a taken domain, an ineligible customer).
    ProvisioningRefusedError: 422,
    # A mail server or webhook receiver refused or failed a notice (the relay's error).
    NotificationDeliveryError: 502,
    # Raised to callers when a run's state refuses the request (a retry of a finished or
    # running period); a run's own failures are in its saga's record, not raised.
    BillingRunError: 409,
    # The HTTP layer's own errors (http/_errors.py).
    IdempotencyKeyMissingError: 400,
    IdempotencyKeyInvalidError: 400,
    RequestBodyTooLargeError: 413,
}

# Members the body always carries; context never overwrites them.
_RESERVED: Final = frozenset(
    {"type", "title", "status", "detail", "instance", "code", "correlation_id"}
)
# to_dict() keys that say nothing a problem body does not already say.
_DROPPED: Final = frozenset({"error", "message"})

_GENERIC_DETAIL: Final = "The server could not complete the request; quote the correlation_id."
_PERSISTENCE_DETAIL: Final = "The database is unavailable or failed; retry later."

_logger = get_logger(__name__)


class ProblemResponse(JSONResponse):
    """A JSON response with the ``application/problem+json`` media type."""

    media_type = PROBLEM_CONTENT_TYPE


def problem_status(exc: BaseException) -> int:
    """Return the HTTP status for ``exc``: its class's entry in :data:`PROBLEM_STATUS`, else 500.

    Example:
        >>> from dotmac_shared.business_logic.exceptions import SagaNotFoundError
        >>> problem_status(SagaNotFoundError("no such saga"))
        404
    """
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, SagaCompensatedError):
        return compensated_saga_status(exc.failure_code)
    return _class_status(type(exc))


def _class_status(cls: type[BaseException]) -> int:
    for base in cls.__mro__:
        status = PROBLEM_STATUS.get(base)
        if status is not None:
            return int(status)
    return 500


#: Failure codes of a compensated saga that name no error class (sagas/_results.py).
_GENERIC_FAILURE_STATUS: Final[Mapping[str, int]] = {
    # A step hit an exception nobody translated: a system the saga drives failed.
    "unexpected_error": 502,
    # A step try ran past its own timeout: the system it waited for did not answer.
    "step_timeout": 504,
    # Someone cancelled the saga while it ran.
    "saga_cancelled": 409,
}


def _error_class(code: str) -> type[BusinessLogicError] | None:
    """The ``BusinessLogicError`` subclass whose stable code is ``code`` (any subclass loaded)."""
    pending: list[type[BusinessLogicError]] = [BusinessLogicError]
    while pending:
        cls = pending.pop()
        if cls.code == code:
            return cls
        pending.extend(cls.__subclasses__())
    return None


def compensated_saga_status(failure_code: str) -> int:
    """The HTTP status of a saga that was compensated after a failure with ``failure_code``.

    A client's error keeps its status (``invalid_input`` and ``policy_violation``: 422); a
    server-side failure of a step is a failure of a system the saga drives: 502 (504 for a
    step timeout, 503 for a database that is unavailable).

    Example:
        >>> compensated_saga_status("invalid_input"), compensated_saga_status("unexpected_error")
        (422, 502)
    """
    generic = _GENERIC_FAILURE_STATUS.get(failure_code)
    if generic is not None:
        return generic
    cls = _error_class(failure_code)
    if cls is None:
        return PROBLEM_STATUS[SagaCompensatedError]
    status = _class_status(cls)
    return PROBLEM_STATUS[SagaCompensatedError] if status == 500 else status


def _title(code: str) -> str:
    return code.replace("_", " ").capitalize()


def _type_uri(base: str, code: str) -> str:
    return base if base == "about:blank" else f"{base.rstrip('/')}/{code}"


def _instance(request: Request | None) -> str | None:
    return None if request is None else request.url.path


def _correlation_id(exc: BaseException) -> str:
    if isinstance(exc, BusinessLogicError) and exc.correlation_id:
        return exc.correlation_id
    return get_correlation_id()


def _context(exc: BusinessLogicError) -> dict[str, Any]:
    """The error's structured context, without empty members or ones the body already has."""
    context: dict[str, Any] = {}
    for key, value in exc.to_dict().items():
        if key in _RESERVED or key in _DROPPED or value is None or value == {} or value == []:
            continue
        context[key] = value
    return context


def problem_body(
    exc: BaseException,
    request: Request | None = None,
    *,
    type_base: str = DEFAULT_PROBLEM_TYPE_BASE,
) -> dict[str, Any]:
    """Return the RFC 9457 body for ``exc`` (see the module docstring for its members).

    Args:
        exc: Any exception; one that is not a ``BusinessLogicError`` or an HTTP exception gets
            the generic 500 body, its text withheld.
        request: Gives ``instance`` (the request path) when present.
        type_base: Prefix of the ``type`` URL; the error's stable code is appended.

    Returns:
        A JSON-safe dict.
    """
    status = problem_status(exc)
    correlation_id = _correlation_id(exc)
    body: dict[str, Any]
    if isinstance(exc, HTTPException):
        phrase = _phrase(status)
        body = {
            # A plain HTTP error adds no semantics beyond its status (RFC 9457 section 4.2.1).
            "type": "about:blank",
            "title": phrase,
            "status": status,
            "detail": exc.detail if isinstance(exc.detail, str) else phrase,
            "code": f"http_{status}",
        }
    elif isinstance(exc, SagaCompensatedError):
        body = _compensated_body(exc, status, type_base)
    elif isinstance(exc, BusinessLogicError):
        body = {
            "type": _type_uri(type_base, exc.code),
            "title": _title(exc.code),
            "status": status,
            "code": exc.code,
        }
        if isinstance(exc, PersistenceError):
            body["detail"] = _PERSISTENCE_DETAIL
        elif status >= 500:
            body["detail"] = _GENERIC_DETAIL
        else:
            body["detail"] = exc.message
            body.update(_context(exc))
    else:
        body = {
            "type": _type_uri(type_base, "internal_error"),
            "title": "Internal server error",
            "status": 500,
            "detail": _GENERIC_DETAIL,
            "code": "internal_error",
        }
    instance = _instance(request)
    if instance is not None:
        body["instance"] = instance
    body["correlation_id"] = correlation_id
    return body


def _compensated_body(exc: SagaCompensatedError, status: int, type_base: str) -> dict[str, Any]:
    """The body of a compensated saga: its failure's code, step and context, and the saga.

    The failure's message is shown only for a client error (4xx): a server-side step's
    message is written for operators and may quote a driver; its code and context are not.
    """
    code = exc.failure_code
    step = exc.failure.get("step") or exc.failed_step
    body: dict[str, Any] = {
        "type": _type_uri(type_base, code),
        "title": _title(code),
        "status": status,
        "code": code,
        "detail": (
            str(exc.failure.get("message") or exc.message)
            if status < 500
            else f"step {step!r} failed; the saga was compensated. Quote the correlation_id."
        ),
        "step": step,
        "context": dict(exc.failure.get("context") or {}),
        "saga_id": exc.saga_id,
        "saga_name": exc.saga_name,
        "saga_status": exc.compensation_status,
        "compensated_steps": list(exc.compensated_steps),
    }
    return {key: value for key, value in body.items() if value is not None}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(
    exc: BaseException,
    request: Request | None = None,
    *,
    type_base: str = DEFAULT_PROBLEM_TYPE_BASE,
) -> ProblemResponse:
    """Return the ``application/problem+json`` response for ``exc``.

    Adds ``Retry-After`` (whole seconds, rounded up) for an :class:`OperationInProgressError`
    that knows its estimate, ``WWW-Authenticate`` (the challenge) for an
    :class:`AuthenticationError`, and keeps the headers of an HTTP exception.

    Example:
        >>> from dotmac_shared.business_logic.exceptions import PolicyNotFoundError
        >>> response = problem_response(PolicyNotFoundError("no policy 'x'", correlation_id="c"))
        >>> response.status_code, response.media_type
        (404, 'application/problem+json')
    """
    body = problem_body(exc, request, type_base=type_base)
    headers: dict[str, str] = {}
    if isinstance(exc, HTTPException) and exc.headers:
        headers.update(exc.headers)
    if isinstance(exc, AuthenticationError):
        headers["WWW-Authenticate"] = exc.challenge
    if isinstance(exc, OperationInProgressError) and exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
    if body["status"] >= 500:
        _log_server_error(exc, body)
    return ProblemResponse(body, status_code=body["status"], headers=headers or None)


def _log_server_error(exc: BaseException, body: Mapping[str, Any]) -> None:
    # The body withholds the text of server errors; the log keeps it, under the same id.
    _logger.error(
        "HTTP %s %s (correlation_id=%s)",
        body["status"],
        body["code"],
        body["correlation_id"],
        exc_info=(type(exc), exc, exc.__traceback__),
    )


def _validation_problem(
    errors: list[dict[str, Any]], request: Request, type_base: str
) -> ProblemResponse:
    body: dict[str, Any] = {
        "type": _type_uri(type_base, "request_validation_error"),
        "title": "Request validation error",
        "status": 422,
        "detail": "The request does not match the operation's schema.",
        "code": "request_validation_error",
        # `input` is left out: it echoes what the caller sent, secrets included.
        "errors": [
            {"loc": list(error.get("loc", ())), "msg": error.get("msg"), "type": error.get("type")}
            for error in errors
        ],
        "instance": request.url.path,
        "correlation_id": get_correlation_id(),
    }
    return ProblemResponse(body, status_code=422)


def install_problem_handlers(app: ASGIApp, *, type_base: str = DEFAULT_PROBLEM_TYPE_BASE) -> None:
    """Answer every error of a Starlette or FastAPI ``app`` with a Problem Details response.

    Registers handlers for ``BusinessLogicError`` (its mapped status), Starlette's
    ``HTTPException`` (FastAPI's is a subclass), FastAPI's ``RequestValidationError`` (422,
    with the failing locations) when FastAPI is installed, and any other ``Exception`` (a
    generic 500; Starlette then re-raises it to the server, which logs it).

    Args:
        app: A ``starlette.applications.Starlette`` (FastAPI included).
        type_base: Prefix of the ``type`` URLs.

    Example:
        >>> from fastapi import FastAPI
        >>> app = FastAPI()
        >>> install_problem_handlers(app, type_base="https://errors.example.com/")
    """
    add_handler = getattr(app, "add_exception_handler", None)
    if add_handler is None:
        raise TypeError("install_problem_handlers needs a Starlette or FastAPI application")

    async def on_error(request: Request, exc: Exception) -> Response:
        return problem_response(exc, request, type_base=type_base)

    add_handler(BusinessLogicError, on_error)
    add_handler(HTTPException, on_error)
    add_handler(Exception, on_error)
    try:
        from fastapi.exceptions import RequestValidationError
    except ImportError:  # plain Starlette: no request validation to translate
        return

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        return _validation_problem(list(errors), request, type_base)

    add_handler(RequestValidationError, on_validation_error)
