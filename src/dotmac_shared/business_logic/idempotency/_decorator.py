"""``@idempotent``: make any async function run at most once per payload and tenant."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.idempotency._keys import IdempotencyKey
from dotmac_shared.business_logic.idempotency._manager import IdempotencyManager
from dotmac_shared.business_logic.idempotency._operation import FunctionOperation

__all__ = ["idempotent"]

P = ParamSpec("P")
R = TypeVar("R")


def idempotent(
    manager: IdempotencyManager | Callable[[], IdempotencyManager],
    *,
    operation_type: str,
    tenant_arg: str = "tenant_id",
    **settings: Any,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate an async function so equal arguments run it once and replay its return value.

    The key is generated from all the bound arguments (the payload) and scoped by the tenant
    argument named ``tenant_arg``. The return value must be encodable by the codec. A
    failure is re-raised. ``settings`` tune the operation (``ttl``, ``max_attempts``,
    ``retry_on``, ``cache_failures``, ...), as the class attributes of
    :class:`IdempotentOperation` do.

    Example:
        >>> @idempotent(manager, operation_type="send_invoice")  # doctest: +SKIP
        ... async def send_invoice(tenant_id: str, invoice_id: str) -> dict: ...
    """

    def decorate(function: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        signature = inspect.signature(function)
        for parameter in signature.parameters.values():
            if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                raise InvalidInputError(
                    f"@idempotent needs named parameters; {function.__qualname__} has "
                    f"{parameter.kind.description} parameter {parameter.name!r}",
                    field=parameter.name,
                )
        if tenant_arg not in signature.parameters:
            raise InvalidInputError(
                f"@idempotent: {function.__qualname__} has no {tenant_arg!r} parameter to "
                "scope its keys by tenant",
                field="tenant_arg",
            )
        operation = FunctionOperation(function, operation_type, **settings)

        @functools.wraps(function)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            payload = dict(bound.arguments)
            tenant_id = payload[tenant_arg]
            key = IdempotencyKey.generate(operation_type, tenant_id, payload)
            resolved = manager if isinstance(manager, IdempotencyManager) else manager()
            result = await resolved.execute_idempotent(
                idempotency_key=key,
                operation_data=payload,
                operation=operation,
                raise_on_failure=True,
            )
            assert result.data is not None
            value: R = result.data["value"]
            return value

        return wrapper

    return decorate
