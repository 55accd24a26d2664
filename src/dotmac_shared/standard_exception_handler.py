"""``@standard_exception_handler``: one way to log and surface errors from business code.

A :class:`BusinessLogicError` is logged once, with its context, and re-raised unchanged.
Any other exception is logged with its traceback and re-raised as a ``BusinessLogicError``
of severity HIGH, the original kept as ``__cause__``. Works on sync and async functions.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast, overload

from dotmac_shared.business_logic.exceptions import BusinessLogicError, ErrorSeverity
from dotmac_shared.business_logic.observability.log import get_logger

__all__ = ["standard_exception_handler"]

logger = get_logger("dotmac_shared.business_logic.errors")

P = ParamSpec("P")
R = TypeVar("R")

# Marks an error already logged by an outer or inner handler, so nesting logs it once.
_LOGGED_ATTR = "_dotmac_logged"


def _handle(func: Callable[..., Any], exc: Exception) -> BusinessLogicError:
    """Log ``exc`` once and return the error to raise in its place."""
    if isinstance(exc, BusinessLogicError):
        error = exc
        if not getattr(error, _LOGGED_ATTR, False):
            level = logging.ERROR if error.severity in _LOUD else logging.WARNING
            logger.log(level, "%s: %s", error.code, error.message, extra={"error": error.to_dict()})
    else:
        error = BusinessLogicError(
            f"Unexpected {type(exc).__name__} in {func.__qualname__}: {exc}",
            operation=func.__qualname__,
            severity=ErrorSeverity.HIGH,
            metadata={"exception_type": type(exc).__name__},
        )
        logger.error(
            "unexpected error in %s",
            func.__qualname__,
            exc_info=exc,
            extra={"error": error.to_dict()},
        )
    setattr(error, _LOGGED_ATTR, True)
    return error


_LOUD = frozenset({ErrorSeverity.HIGH, ErrorSeverity.CRITICAL})


@overload
def standard_exception_handler(
    func: Callable[P, Awaitable[R]],
) -> Callable[P, Awaitable[R]]: ...


@overload
def standard_exception_handler(func: Callable[P, R]) -> Callable[P, R]: ...


def standard_exception_handler(func: Callable[P, Any]) -> Callable[P, Any]:
    """Log and normalize the exceptions of ``func`` (sync or async).

    Example:
        >>> @standard_exception_handler
        ... async def business_operation() -> None:
        ...     pass
    """
    if inspect.iscoroutinefunction(func):
        async_func = cast(Callable[P, Awaitable[Any]], func)

        @functools.wraps(func)
        async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            try:
                return await async_func(*args, **kwargs)
            except Exception as exc:
                error = _handle(func, exc)
                if error is exc:
                    raise
                raise error from exc

        return async_wrapper

    @functools.wraps(func)
    def sync_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            return func(*args, **kwargs)
        except Exception as exc:
            error = _handle(func, exc)
            if error is exc:
                raise
            raise error from exc

    return sync_wrapper
