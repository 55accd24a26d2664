"""The JSON codec for operation payloads and stored results.

Two encodings share one walk over the value:

- :func:`canonical_json` is for hashing. Keys are sorted, whitespace is fixed, and numbers that
  are equal as ``int`` and ``float`` encode equally (``1`` and ``1.0`` give the same key).
  ``Decimal`` is tagged and normalized (``Decimal("1.50")`` and ``Decimal("1.5")`` are equal to
  each other, but not to the float ``1.5``: money and floats are different payloads).
- :func:`encode_result` / :func:`decode_result` are for storing results. They round-trip
  ``Decimal``, ``datetime``, ``date``, ``UUID`` and tuples (as lists) by tagging them
  (``{"$decimal": "12.50"}``, ``{"$datetime": "2026-11-25T10:00:00+00:00"}``,
  ``{"$date": "2026-11-25"}``, ``{"$uuid": "..."}``).

Anything else (sets, bytes, arbitrary objects, NaN, non-string keys, and in results a dict
using one of the tag keys) is a :class:`ResultSerializationError` naming the path of the bad
value. So is a value nested more than :data:`MAX_DEPTH` containers deep, and a value that
contains itself (the message says where the cycle closes); neither ever reaches Python's
recursion limit.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from dotmac_shared.business_logic.exceptions import ResultSerializationError

__all__ = ["MAX_DEPTH", "canonical_json", "decode_result", "encode_result"]

#: How many containers (dicts, lists, tuples) deep a value may nest. Far beyond any real
#: payload or result, and far below Python's recursion limit, which the walk must not reach.
MAX_DEPTH = 100

_TAGS = frozenset(("$decimal", "$datetime", "$date", "$uuid"))


class _Unencodable(Exception):
    """Raised inside the walk; the containers it unwinds through add their step to its path.

    So the walk builds no path strings for values that encode, which is nearly all of them.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.steps: list[str | int] = []  # innermost first
        # ids of the containers unwound through, innermost first (one per step): only the
        # failing walk collects them, to tell a cycle from a merely deep value.
        self.containers: list[int] = []

    def error(self) -> ResultSerializationError:
        steps, message = self.steps, self.message
        cycle = self._cycle()
        if cycle is not None:  # a container met again inside itself: report where
            steps = steps[cycle:]
            message = "the value contains itself (a reference cycle)"
        path = ""
        for step in reversed(steps):
            path += f"[{step}]" if isinstance(step, int) else f".{step}" if path else step
        return ResultSerializationError(
            f"cannot encode value at {path or '$'}: {message}",
            metadata={"path": path or "$"},
        )

    def _cycle(self) -> int | None:
        """Where the path first reaches a container that encloses it, if it does.

        ``containers[i]`` is the container in which ``steps[i]`` was taken (innermost
        first). Going inwards, the first container met a second time closes the cycle;
        ``steps[i + 1:]`` of that second occurrence ``i`` is the path that leads to it.
        """
        seen: set[int] = set()
        for index in range(len(self.containers) - 1, -1, -1):  # outermost first
            ident = self.containers[index]
            if ident in seen:
                return index + 1
            seen.add(ident)
        return None


def _too_deep(depth: int) -> _Unencodable:
    return _Unencodable(f"nested more than {MAX_DEPTH} levels deep (depth {depth})")


def _walk(value: Any, canonical: bool, depth: int = 0) -> Any:
    """Turn ``value`` into plain JSON types, tagging the richer ones.

    ``depth`` counts the containers around ``value``; past :data:`MAX_DEPTH` the walk stops.
    """
    kind = type(value)  # exact types first: the common case, without isinstance chains
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict:
        return _walk_mapping(value, canonical, depth)
    if kind is list or kind is tuple:
        return _walk_items(value, canonical, depth)
    return _walk_other(value, canonical, depth)


def _walk_mapping(value: Mapping[Any, Any], canonical: bool, depth: int) -> dict[str, Any]:
    if depth >= MAX_DEPTH:
        raise _too_deep(depth + 1)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise _Unencodable(f"key {key!r} is not a string")
        if key in _TAGS and not canonical:
            raise _Unencodable(f"key {key!r} is reserved by the codec")
        try:
            out[key] = _walk(item, canonical, depth + 1)
        except _Unencodable as bad:
            bad.steps.append(key)
            bad.containers.append(id(value))
            raise
    if canonical and not _TAGS.isdisjoint(out):
        return {"$map": out}  # so that a payload dict never hashes like a tagged value
    return out


def _walk_items(value: list[Any] | tuple[Any, ...], canonical: bool, depth: int) -> list[Any]:
    if depth >= MAX_DEPTH:
        raise _too_deep(depth + 1)
    out = []
    for index, item in enumerate(value):
        try:
            out.append(_walk(item, canonical, depth + 1))
        except _Unencodable as bad:
            bad.steps.append(index)
            bad.containers.append(id(value))
            raise
    return out


def _walk_other(value: Any, canonical: bool, depth: int) -> Any:
    """Everything but exact ``str``/``int``/``bool``/``None``/``dict``/``list``/``tuple``."""
    if isinstance(value, (str, int)):  # subclasses: str and int enums, bool
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Unencodable(f"{value!r} is not a finite number")
        if canonical and value.is_integer():
            return int(value)
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _Unencodable(f"{value!r} is not a finite number")
        text = format(value.normalize(), "f") if canonical else str(value)
        return {"$decimal": text}
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise _Unencodable("naive datetime; give it a timezone (UTC)")
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, Mapping):
        return _walk_mapping(value, canonical, depth)
    if isinstance(value, (list, tuple)):
        return _walk_items(value, canonical, depth)
    raise _Unencodable(f"type {type(value).__name__} is not supported")


def _walked(value: Any, canonical: bool) -> Any:
    try:
        return _walk(value, canonical)
    except _Unencodable as bad:
        raise bad.error() from None


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def canonical_json(value: Any) -> str:
    """Return the canonical JSON text of ``value``, stable across processes and machines."""
    return _CANONICAL(_walked(value, True))


def encode_result(value: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``value`` as JSON-ready data; raises before anything is stored if it cannot."""
    walked = _walked(value, False)
    if not isinstance(walked, dict):
        raise _Unencodable("an operation result must be a mapping").error()
    return walked


# What JSON decodes to besides containers: exact types, returned as they are without a call.
_PLAIN: Final = frozenset({str, int, float, bool, type(None)})


def _unwalk(value: Any) -> Any:
    kind = type(value)
    if kind is list:
        return [item if type(item) in _PLAIN else _unwalk(item) for item in value]
    if kind is not dict:
        if isinstance(value, list):  # a subclass, from a caller rather than from JSON
            return [_unwalk(item) for item in value]
        return value if not isinstance(value, dict) else _unwalk(dict(value))
    if len(value) == 1:
        ((tag, text),) = value.items()
        if tag == "$decimal":
            return Decimal(text)
        if tag == "$datetime":
            return dt.datetime.fromisoformat(text)
        if tag == "$date":
            return dt.date.fromisoformat(text)
        if tag == "$uuid":
            return uuid.UUID(text)
    return {key: item if type(item) in _PLAIN else _unwalk(item) for key, item in value.items()}


def decode_result(data: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`encode_result`."""
    decoded = _unwalk(data if type(data) is dict else dict(data))
    assert isinstance(decoded, dict)
    return decoded
