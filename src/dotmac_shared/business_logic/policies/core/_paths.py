"""Field paths: parsed once when a policy is loaded, looked up by precompiled getters.

A path names a value in the input (``credit_score``, ``location.service_coverage``,
``devices[0].type``), in the evaluation context (``context.tenant_id``,
``context.attributes.region`` or simply ``context.region``, ``context.now``) or, for
``value_from`` only, in the policy's own parameters (``params.tiers.silver``).

Parsing happens at registration; evaluation only walks a tuple of keys and indexes.
A path that does not resolve gives :data:`MISSING`, never an exception.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from dotmac_shared.business_logic.policies.core._results import PolicyContext

__all__ = [
    "CONTEXT_FIELDS",
    "MAX_PATH_LENGTH",
    "MISSING",
    "FieldPath",
    "Getter",
    "PathRoot",
    "compile_getter",
    "descender",
    "lookup",
    "parse_path",
    "top_level_getter",
]


class _Missing:
    """Sentinel for "the path does not resolve" (distinct from a present ``None``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final[Any] = _Missing()
"""Returned by getters when a path does not resolve."""

MAX_PATH_LENGTH: Final = 256
_MAX_SEGMENTS: Final = 32

_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9_-]*"
_PATH_RE = re.compile(rf"^{_SEGMENT}(?:\[\d{{1,9}}\])*(?:\.{_SEGMENT}(?:\[\d{{1,9}}\])*)*$")
_TOKEN_RE = re.compile(rf"({_SEGMENT})|\[(\d+)\]")

CONTEXT_FIELDS: Final = frozenset({"tenant_id", "user_id", "operation", "correlation_id"})
"""Attributes of :class:`PolicyContext` reachable as ``context.<name>``."""

PathRoot = Literal["input", "context", "params"]
Getter = Callable[[Mapping[str, Any], "PolicyContext | None"], Any]
"""A compiled lookup: ``getter(data, context)`` returns the value or :data:`MISSING`."""


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A parsed path.

    Attributes:
        text: The path as written in the document.
        root: ``"input"``, ``"context"`` or ``"params"``.
        keys: Keys (``str``) and list indexes (``int``) below the root.

    Example:
        >>> parse_path("devices[0].type").keys
        ('devices', 0, 'type')
        >>> parse_path("context.tenant_id").root
        'context'
    """

    text: str
    root: PathRoot
    keys: tuple[str | int, ...]


def parse_path(text: str, *, allow_params: bool = False) -> FieldPath:
    """Parse ``text`` into a :class:`FieldPath`.

    Args:
        text: A path such as ``location.service_coverage`` or ``devices[0].type``.
        allow_params: Whether ``params.<path>`` (the policy's parameters) is allowed.

    Returns:
        The parsed path.

    Raises:
        ValueError: The path is empty, too long or not of the form ``key(.key|[index])*``.
    """
    if not isinstance(text, str):
        raise ValueError(f"a path must be a string, got {type(text).__name__}")
    if not text or len(text) > MAX_PATH_LENGTH:
        raise ValueError(f"a path must have 1 to {MAX_PATH_LENGTH} characters")
    if _PATH_RE.fullmatch(text) is None:
        raise ValueError(
            f"bad path syntax {text!r}: expected keys separated by dots, "
            "each optionally followed by [index], e.g. devices[0].type"
        )
    keys: list[str | int] = []
    for match in _TOKEN_RE.finditer(text):
        key, index = match.group(1), match.group(2)
        keys.append(key if key is not None else int(index))
    if len(keys) > _MAX_SEGMENTS:
        raise ValueError(f"path {text!r} has more than {_MAX_SEGMENTS} segments")
    first = keys[0]
    if first == "context":
        if len(keys) < 2 or not isinstance(keys[1], str):
            raise ValueError(f"path {text!r} must name a context value, e.g. context.tenant_id")
        return FieldPath(text, "context", tuple(keys[1:]))
    if first == "params":
        if not allow_params:
            raise ValueError(f"path {text!r}: params.<path> is only allowed in value_from")
        if len(keys) < 2:
            raise ValueError(f"path {text!r} must name a parameter, e.g. params.min_score")
        return FieldPath(text, "params", tuple(keys[1:]))
    return FieldPath(text, "input", tuple(keys))


def lookup(value: Any, keys: Sequence[str | int]) -> Any:
    """Walk ``keys`` down from ``value``; :data:`MISSING` if any step does not resolve.

    String keys index mappings (with ``.get``, so a ``defaultdict`` is never modified);
    integer keys index lists and tuples (never strings).
    """
    for key in keys:
        if isinstance(key, int):
            if not isinstance(value, list | tuple) or key >= len(value):
                return MISSING
            value = value[key]
        else:
            if not isinstance(value, Mapping):
                return MISSING
            try:
                value = value.get(key, MISSING)
            except TypeError:  # e.g. a mapping whose keys cannot be compared with str
                return MISSING
            if value is MISSING:
                return MISSING
    return value


def top_level_getter(key: str) -> Getter:
    """Getter of one top-level input key (``data.get(key)``, MISSING if absent)."""

    def get_top(data: Mapping[str, Any], context: PolicyContext | None) -> Any:
        if type(data) is dict:
            return data.get(key, MISSING)
        return lookup(data, (key,))

    return get_top


def descender(rest: tuple[str | int, ...]) -> Callable[[Any], Any] | None:
    """Function taking a top-level value down the rest of a path (``None`` if no rest)."""
    if not rest:
        return None
    if len(rest) == 1 and isinstance(rest[0], str):
        key = rest[0]

        def descend_one(value: Any) -> Any:
            if type(value) is dict:
                return value.get(key, MISSING)
            return lookup(value, rest)

        return descend_one

    def descend(value: Any) -> Any:
        return lookup(value, rest)

    return descend


def _input_getter(keys: tuple[str | int, ...]) -> Getter:
    top = top_level_getter(str(keys[0]))
    descend = descender(keys[1:])
    if descend is None:
        return top

    def get_path(data: Mapping[str, Any], context: PolicyContext | None) -> Any:
        return descend(top(data, context))

    return get_path


def _context_getter(keys: tuple[str | int, ...]) -> Getter:
    head, rest = keys[0], keys[1:]
    if head == "now":
        if rest:
            raise ValueError("context.now has no sub-fields")

        def get_now(data: Mapping[str, Any], context: PolicyContext | None) -> Any:
            if context is not None and context.now is not None:
                return context.now
            return datetime.now(UTC)

        return get_now

    if head in CONTEXT_FIELDS:
        attribute = str(head)

        def get_field(data: Mapping[str, Any], context: PolicyContext | None) -> Any:
            if context is None:
                return MISSING
            return (
                lookup(getattr(context, attribute), rest) if rest else getattr(context, attribute)
            )

        return get_field

    if head == "attributes":
        if not rest:
            raise ValueError("context.attributes must be followed by a key")
        attribute_keys = rest
    else:
        # ``context.region`` is shorthand for ``context.attributes.region``.
        attribute_keys = keys

    def get_attribute(data: Mapping[str, Any], context: PolicyContext | None) -> Any:
        if context is None:
            return MISSING
        return lookup(context.attributes, attribute_keys)

    return get_attribute


def compile_getter(path: FieldPath) -> Getter:
    """Build the getter for an input or context path.

    Args:
        path: A parsed path whose root is ``input`` or ``context``.

    Returns:
        ``getter(data, context)`` giving the value or :data:`MISSING`.

    Raises:
        ValueError: The path is a ``params`` path (those are resolved at compile time)
            or names a context value that cannot have sub-fields.
    """
    if path.root == "input":
        return _input_getter(path.keys)
    if path.root == "context":
        return _context_getter(path.keys)
    raise ValueError(f"params paths are resolved when the policy is compiled: {path.text!r}")
