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
value.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from dotmac_shared.business_logic.exceptions import ResultSerializationError

__all__ = ["canonical_json", "decode_result", "encode_result"]

_TAGS = ("$decimal", "$datetime", "$date", "$uuid")


def _bad(path: str, message: str) -> ResultSerializationError:
    return ResultSerializationError(
        f"cannot encode value at {path or '$'}: {message}",
        metadata={"path": path or "$"},
    )


def _walk(value: Any, path: str, *, canonical: bool) -> Any:
    """Turn ``value`` into plain JSON types, tagging the richer ones."""
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _bad(path, f"{value!r} is not a finite number")
        if canonical and value.is_integer():
            return int(value)
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _bad(path, f"{value!r} is not a finite number")
        text = format(value.normalize(), "f") if canonical else str(value)
        return {"$decimal": text}
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            raise _bad(path, "naive datetime; give it a timezone (UTC)")
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _bad(path, f"key {key!r} is not a string")
            if key in _TAGS and not canonical:
                raise _bad(path, f"key {key!r} is reserved by the codec")
            out[key] = _walk(item, f"{path}.{key}" if path else key, canonical=canonical)
        if canonical and any(key in _TAGS for key in out):
            return {"$map": out}  # so that a payload dict never hashes like a tagged value
        return out
    if isinstance(value, (list, tuple)):
        return [_walk(item, f"{path}[{i}]", canonical=canonical) for i, item in enumerate(value)]
    raise _bad(path, f"type {type(value).__name__} is not supported")


def canonical_json(value: Any) -> str:
    """Return the canonical JSON text of ``value``, stable across processes and machines."""
    walked = _walk(value, "", canonical=True)
    return json.dumps(walked, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def encode_result(value: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``value`` as JSON-ready data; raises before anything is stored if it cannot."""
    walked = _walk(value, "", canonical=False)
    if not isinstance(walked, dict):
        raise _bad("", "an operation result must be a mapping")
    return walked


def _unwalk(value: Any) -> Any:
    if isinstance(value, list):
        return [_unwalk(item) for item in value]
    if not isinstance(value, dict):
        return value
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
    return {key: _unwalk(item) for key, item in value.items()}


def decode_result(data: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`encode_result`."""
    decoded = _unwalk(dict(data))
    assert isinstance(decoded, dict)
    return decoded
