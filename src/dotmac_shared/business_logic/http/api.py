"""The ``/v1`` REST API, its authentication and API keys (the ``[http]`` extra).

Example:
    >>> from dotmac_shared.business_logic import create_session_factory
    >>> from dotmac_shared.business_logic.http.api import create_app
    >>> app = create_app(create_session_factory("sqlite:///api.db"))  # doctest: +SKIP
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
from dotmac_shared.business_logic.http._models import ApiKey
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
    "PUBLIC_PATHS",
    "Principal",
    "REQUEST_ID_HEADER",
    "ROLES",
    "TOKEN_PREFIX",
    "correlation_id_of",
    "create_api_key",
    "create_app",
    "current_principal",
    "list_api_keys",
    "require_role",
    "revoke_api_key",
    "verify_api_key",
]
