"""The HTTP layer (the ``[http]`` extra): Problem Details and the Idempotency-Key header.

Only this package imports Starlette and FastAPI; the rest of the library runs without them.

Example:
    >>> from fastapi import FastAPI
    >>> from dotmac_shared.business_logic.http import install_problem_handlers
    >>> app = FastAPI()
    >>> install_problem_handlers(app)
"""

from dotmac_shared.business_logic.http._dependencies import require_idempotency_key
from dotmac_shared.business_logic.http._errors import (
    IdempotencyKeyInvalidError,
    IdempotencyKeyMissingError,
    RequestBodyTooLargeError,
)
from dotmac_shared.business_logic.http._idempotency import (
    DEFAULT_TENANT,
    IDEMPOTENCY_HEADER,
    REPLAYED_HEADER,
    IdempotencyMiddleware,
    TenantResolver,
    default_store_status,
    idempotency_key_of,
    parse_idempotency_key,
    tenant_from_scope,
)
from dotmac_shared.business_logic.http._problems import (
    DEFAULT_PROBLEM_TYPE_BASE,
    PROBLEM_CONTENT_TYPE,
    PROBLEM_STATUS,
    ProblemResponse,
    install_problem_handlers,
    problem_body,
    problem_response,
    problem_status,
)

__all__ = [
    "DEFAULT_PROBLEM_TYPE_BASE",
    "DEFAULT_TENANT",
    "IDEMPOTENCY_HEADER",
    "IdempotencyKeyInvalidError",
    "IdempotencyKeyMissingError",
    "IdempotencyMiddleware",
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_STATUS",
    "ProblemResponse",
    "REPLAYED_HEADER",
    "RequestBodyTooLargeError",
    "TenantResolver",
    "default_store_status",
    "idempotency_key_of",
    "install_problem_handlers",
    "parse_idempotency_key",
    "problem_body",
    "problem_response",
    "problem_status",
    "require_idempotency_key",
    "tenant_from_scope",
]
