"""The HTTP layer (the ``[http]`` extra): the ``/v1`` API, Problem Details, Idempotency-Key.

Only this package imports Starlette and FastAPI; the rest of the library runs without them.
``create_app`` builds the whole API; ``IdempotencyMiddleware``, ``require_idempotency_key`` and
``install_problem_handlers`` also work on their own in any Starlette or FastAPI application.

Example:
    >>> from fastapi import FastAPI
    >>> from dotmac_shared.business_logic.http import install_problem_handlers
    >>> app = FastAPI()
    >>> install_problem_handlers(app)
"""

from dotmac_shared.business_logic.http._api_keys import (
    ROLES,
    TOKEN_PREFIX,
    ApiKeyInfo,
    CreatedApiKey,
    create_api_key,
    list_api_keys,
    revoke_api_key,
    verify_api_key,
)
from dotmac_shared.business_logic.http._app import API_VERSION, create_app
from dotmac_shared.business_logic.http._auth import (
    PUBLIC_PATHS,
    ApiKeyAuthenticator,
    Authenticate,
    AuthenticationMiddleware,
    Principal,
    current_principal,
    require_role,
)
from dotmac_shared.business_logic.http._correlation import (
    REQUEST_ID_HEADER,
    CorrelationMiddleware,
    correlation_id_of,
)
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
from dotmac_shared.business_logic.http._models import ApiKey, HttpBase
from dotmac_shared.business_logic.http._problems import (
    DEFAULT_PROBLEM_TYPE_BASE,
    PROBLEM_CONTENT_TYPE,
    PROBLEM_STATUS,
    ProblemResponse,
    compensated_saga_status,
    install_problem_handlers,
    problem_body,
    problem_response,
    problem_status,
)
from dotmac_shared.business_logic.http._state import ApiServices

__all__ = [
    "API_VERSION",
    "ApiKey",
    "ApiKeyAuthenticator",
    "ApiKeyInfo",
    "ApiServices",
    "Authenticate",
    "AuthenticationMiddleware",
    "CorrelationMiddleware",
    "CreatedApiKey",
    "DEFAULT_PROBLEM_TYPE_BASE",
    "DEFAULT_TENANT",
    "HttpBase",
    "IDEMPOTENCY_HEADER",
    "IdempotencyKeyInvalidError",
    "IdempotencyKeyMissingError",
    "IdempotencyMiddleware",
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_STATUS",
    "PUBLIC_PATHS",
    "Principal",
    "ProblemResponse",
    "REPLAYED_HEADER",
    "REQUEST_ID_HEADER",
    "ROLES",
    "RequestBodyTooLargeError",
    "TOKEN_PREFIX",
    "TenantResolver",
    "compensated_saga_status",
    "correlation_id_of",
    "create_api_key",
    "create_app",
    "current_principal",
    "default_store_status",
    "idempotency_key_of",
    "install_problem_handlers",
    "list_api_keys",
    "parse_idempotency_key",
    "problem_body",
    "problem_response",
    "problem_status",
    "require_idempotency_key",
    "require_role",
    "revoke_api_key",
    "tenant_from_scope",
    "verify_api_key",
]
