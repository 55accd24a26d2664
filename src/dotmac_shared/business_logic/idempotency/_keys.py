"""Idempotency keys: deterministic from the payload, or supplied by a client."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dotmac_shared.business_logic.exceptions import InvalidInputError, ResultSerializationError
from dotmac_shared.business_logic.idempotency._codec import canonical_json

__all__ = ["IdempotencyKey", "payload_fingerprint"]

_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,100}\Z")
_MAX_KEY = 255


def payload_fingerprint(operation_data: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``operation_data``.

    Raises:
        InvalidInputError: The payload holds a value the codec cannot encode (NaN, an
            object, a cycle, nesting past the limit): the caller's input is wrong, so it
            is the caller's error, naming the path, not a server-side serialization error.
    """
    try:
        text = canonical_json(operation_data)
    except ResultSerializationError as exc:
        raise InvalidInputError(
            f"operation_data {exc.message}",
            field="operation_data",
            metadata=dict(exc.metadata),
        ) from exc
    return hashlib.sha256(text.encode()).hexdigest()


def _check(name: str, value: object, pattern: re.Pattern[str] = _NAME) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise InvalidInputError(
            f"{name} must be 1-100 characters of letters, digits and _.:- (got {value!r})",
            field=name,
        )
    return value


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A key scoped by tenant and operation type, with the fingerprint of its payload.

    Attributes:
        operation_type: Which registered operation the key belongs to.
        tenant_id: The tenant whose key space holds it; other tenants never see it.
        key: The key string (generated, or the client's ``Idempotency-Key``).
        payload_hash: SHA-256 of the canonical payload the key was made for.
    """

    operation_type: str
    tenant_id: str
    key: str
    payload_hash: str

    @classmethod
    def generate(
        cls, operation_type: str, tenant_id: str, operation_data: Mapping[str, Any]
    ) -> IdempotencyKey:
        """Derive the key from the payload: equal payloads give equal keys, everywhere.

        Example:
            >>> a = IdempotencyKey.generate("refund", "t1", {"amount": 1, "id": "x"})
            >>> b = IdempotencyKey.generate("refund", "t1", {"id": "x", "amount": 1.0})
            >>> a == b
            True
        """
        _check("operation_type", operation_type)
        _check("tenant_id", tenant_id)
        if not isinstance(operation_data, Mapping):
            raise InvalidInputError("operation_data must be a mapping", field="operation_data")
        fingerprint = payload_fingerprint(operation_data)
        return cls(operation_type, tenant_id, f"{operation_type}:{fingerprint[:40]}", fingerprint)

    @classmethod
    def from_client(
        cls,
        key: str,
        *,
        operation_type: str,
        tenant_id: str,
        operation_data: Mapping[str, Any],
    ) -> IdempotencyKey:
        """Wrap a caller-chosen key (an HTTP ``Idempotency-Key``) with the payload's fingerprint."""
        _check("operation_type", operation_type)
        _check("tenant_id", tenant_id)
        if not isinstance(key, str) or not key.strip() or len(key) > _MAX_KEY:
            raise InvalidInputError(
                f"idempotency key must be a non-empty string of at most {_MAX_KEY} characters",
                field="idempotency_key",
            )
        return cls(operation_type, tenant_id, key, payload_fingerprint(operation_data))

    def __str__(self) -> str:
        return self.key
