"""``@standard_exception_handler``: one way to log and surface errors from business code.

A :class:`BusinessLogicError` is logged once, with its context, and re-raised unchanged.
A web framework's own HTTP exceptions (Starlette's and so FastAPI's ``HTTPException``,
Werkzeug's, Django's ``Http404``, and any type given to :func:`pass_through`) are control
flow the framework answers itself: they pass through untouched and unlogged. Any other
exception is logged with its traceback and re-raised as a ``BusinessLogicError`` of severity
HIGH, the original kept as ``__cause__``. Works on sync and async functions.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar, cast, overload

from dotmac_shared.business_logic.exceptions import BusinessLogicError, ErrorSeverity
from dotmac_shared.business_logic.observability._log import get_logger

__all__ = ["pass_through", "standard_exception_handler"]

logger = get_logger("dotmac_shared.business_logic.errors")

P = ParamSpec("P")
R = TypeVar("R")

# Marks an error already logged by an outer or inner handler, so nesting logs it once.
_LOGGED_ATTR = "_dotmac_logged"

#: Web frameworks' HTTP exceptions, by defining module and name: matched along the MRO, so
#: subclasses (FastAPI's ``HTTPException`` is Starlette's) pass too, and no framework is
#: imported to know them.
_FRAMEWORK_EXCEPTIONS: frozenset[tuple[str, str]] = frozenset(
    {
        ("starlette.exceptions", "HTTPException"),
        ("starlette.exceptions", "WebSocketException"),
        ("werkzeug.exceptions", "HTTPException"),
        ("django.http.response", "Http404"),
        ("django.core.exceptions", "PermissionDenied"),
    }
)
_passed_through: tuple[type[BaseException], ...] = ()


def pass_through(*exception_types: type[BaseException]) -> None:
    """Let ``exception_types`` (and their subclasses) through every handler untouched.

    For a framework's control-flow exceptions that are not known already.

    Example:
        >>> class Redirect(Exception): ...
        >>> pass_through(Redirect)
    """
    global _passed_through
    for exception_type in exception_types:
        if not (isinstance(exception_type, type) and issubclass(exception_type, BaseException)):
            raise TypeError(f"pass_through takes exception types, got {exception_type!r}")
    _passed_through = (*_passed_through, *exception_types)


def _passes_through(exc: BaseException) -> bool:
    if isinstance(exc, _passed_through):
        return True
    return any((k.__module__, k.__qualname__) in _FRAMEWORK_EXCEPTIONS for k in type(exc).__mro__)


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
                if _passes_through(exc):
                    raise
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
            if _passes_through(exc):
                raise
            error = _handle(func, exc)
            if error is exc:
                raise
            raise error from exc

    return sync_wrapper
