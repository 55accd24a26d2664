"""The input schema as the static checks read it: where a field path leads, and its types.

``input_schema`` is a JSON Schema object for the input. :class:`InputSchema` reads ``type``,
``properties``, ``additionalProperties``, ``items``, ``prefixItems``, local ``$ref``
(``#/...``) and ``anyOf``/``oneOf``/``allOf``; a key not listed in ``properties`` is absent
unless ``additionalProperties`` allows it. Anything else it cannot read raises
:class:`InputSchemaError`, which :mod:`._checks` reports as ``invalid-input-schema``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from dotmac_shared.business_logic.policies.core._check_domain import (
    ANY_NUMBER,
    ANY_OTHER,
    ANY_STRING,
    NOTHING,
    NULL,
    PathKey,
    ValueSet,
)

__all__ = ["InputSchema", "InputSchemaError", "SchemaLookup"]

_MAX_REF_HOPS: Final = 32
_MAX_CANDIDATES: Final = 64

_SCHEMA_TYPES: Final = {
    "string": ANY_STRING,
    "number": ANY_NUMBER | ValueSet(nan=True),
    "integer": ANY_NUMBER,
    "boolean": ValueSet(true=True, false=True),
    "null": NULL,
    "object": ANY_OTHER,
    "array": ANY_OTHER,
}


class InputSchemaError(Exception):
    """The input schema cannot be read at some place."""


@dataclass(frozen=True, slots=True)
class SchemaLookup:
    """Where a path leads in the schema: absent, unknown (any) or declared types."""

    absent_at: int | None = None  # index of the first key the schema does not allow
    types: ValueSet | None = None  # None: the schema does not say


class InputSchema:
    """A policy's ``input_schema``, read lazily path by path."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def resolve(self, node: Any) -> Any:
        """``node`` with its local ``$ref`` chain followed."""
        for _ in range(_MAX_REF_HOPS):
            if not isinstance(node, Mapping) or "$ref" not in node:
                return node
            ref = node["$ref"]
            if not isinstance(ref, str) or not (ref == "#" or ref.startswith("#/")):
                raise InputSchemaError(f"$ref {ref!r}: only local references (#/...) are read")
            target: Any = self.root
            for part in ref[2:].split("/") if ref != "#" else []:
                part = part.replace("~1", "/").replace("~0", "~")
                if isinstance(target, Mapping) and part in target:
                    target = target[part]
                elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                    target = target[int(part)]
                else:
                    raise InputSchemaError(f"$ref {ref!r} does not resolve")
            node = target
        raise InputSchemaError(f"$ref chain longer than {_MAX_REF_HOPS} references")

    def alternatives(self, node: Any, depth: int = 0) -> list[Any]:
        """``node`` and the branches of its anyOf/oneOf/allOf, references resolved."""
        if depth > _MAX_REF_HOPS:
            raise InputSchemaError(f"anyOf/oneOf/allOf nested deeper than {_MAX_REF_HOPS} levels")
        node = self.resolve(node)
        found = [node]
        if isinstance(node, Mapping):
            for keyword in ("anyOf", "oneOf", "allOf"):
                branches = node.get(keyword)
                if branches is None:
                    continue
                if not isinstance(branches, list):
                    raise InputSchemaError(f"{keyword} must be a list of schemas")
                for branch in branches:
                    found.extend(self.alternatives(branch, depth + 1))
                    if len(found) > _MAX_CANDIDATES:
                        raise InputSchemaError(
                            f"more than {_MAX_CANDIDATES} alternatives to follow"
                        )
        return found

    @staticmethod
    def declared(node: Mapping[str, Any]) -> ValueSet | None:
        """The values ``node``'s ``type`` allows, or ``None`` when it declares none."""
        kind = node.get("type")
        if kind is None:
            return None
        names = kind if isinstance(kind, list) else [kind]
        values = NOTHING
        for name in names:
            if not isinstance(name, str) or name not in _SCHEMA_TYPES:
                known = ", ".join(sorted(_SCHEMA_TYPES))
                raise InputSchemaError(f"type {name!r} is not a JSON Schema type ({known})")
            values = values | _SCHEMA_TYPES[name]
        return values

    def child(self, node: Any, key: str | int) -> tuple[list[Any], bool]:
        """The schemas of ``node[key]`` and whether the schema cannot say (any value)."""
        if node is True:
            return [], True
        if node is False:
            return [], False
        if not isinstance(node, Mapping):
            raise InputSchemaError(f"a schema must be an object or a boolean, got {node!r:.40}")
        declared = self.declared(node)
        if isinstance(key, str):
            properties = node.get("properties")
            if properties is not None and not isinstance(properties, Mapping):
                raise InputSchemaError("properties must be an object")
            if properties is not None and key in properties:
                return [properties[key]], False
            extra = node.get("additionalProperties")
            if isinstance(extra, Mapping):
                return [extra], False
            if extra is True or "patternProperties" in node:
                return [], True
            if properties is not None or extra is False:
                return [], False
            if declared is not None and not declared.other:
                return [], False  # not an object: no keys
            return [], True
        prefix = node.get("prefixItems")
        if isinstance(prefix, list) and key < len(prefix):
            return [prefix[key]], False
        items = node.get("items")
        if isinstance(items, Mapping) or items is False:
            return ([items] if items is not False else []), False
        if items is True:
            return [], True
        if declared is not None and not declared.other:
            return [], False  # not an array: no items
        return [], True

    def lookup(self, keys: PathKey) -> SchemaLookup:
        """Where the input path ``keys`` leads in the schema."""
        candidates = self.alternatives(self.root)
        for index, key in enumerate(keys):
            found: list[Any] = []
            for candidate in candidates:
                children, unknown = self.child(candidate, key)
                if unknown:
                    return SchemaLookup()
                for child in children:
                    found.extend(self.alternatives(child))
            if len(found) > _MAX_CANDIDATES:
                return SchemaLookup()
            if not found:
                return SchemaLookup(absent_at=index)
            candidates = found
        types = NOTHING
        for candidate in candidates:
            if candidate is True or not isinstance(candidate, Mapping):
                return SchemaLookup()
            declared = self.declared(candidate)
            if declared is None:
                return SchemaLookup()
            types = types | declared
        return SchemaLookup(types=types)
