"""What the console's query strings and forms mean: parsed and checked here, no I/O.

Each parser raises :class:`~dotmac_shared.business_logic.exceptions.InvalidInputError` naming
the field and what is wrong with it, which the page shows next to the form (status 400).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.sagas import SagaStatus

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_FORM_BYTES",
    "SagaFilters",
    "parse_form",
    "parse_json_object",
    "parse_time",
]

#: Sagas per page unless ``limit`` says otherwise.
DEFAULT_PAGE_SIZE: Final = 25
#: Largest page ``limit`` accepted.
MAX_PAGE_SIZE: Final = 200
#: Largest form body read (an evaluation's input is the biggest form).
MAX_FORM_BYTES: Final = 256 * 1024
#: Longest tenant id or saga name accepted in a filter (the columns' width).
_MAX_FILTER_CHARS: Final = 255


def parse_form(body: bytes) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (first value of each field).

    Raises:
        InvalidInputError: The body is not UTF-8.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError("the form is not UTF-8", field="body") from None
    form: dict[str, str] = {}
    for name, value in urllib.parse.parse_qsl(text, keep_blank_values=True):
        form.setdefault(name, value)
    return form


def parse_time(field: str, value: str | None) -> dt.datetime | None:
    """A time filter: ISO 8601, in UTC unless it names its offset; blank means no filter.

    A ``datetime-local`` input sends ``YYYY-MM-DDTHH:MM``, without an offset.

    Raises:
        InvalidInputError: ``value`` is not a time.
    """
    if value is None or not value.strip():
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInputError(
            f"{field} must be a date and time like 2026-11-29T10:00 (UTC), not {value[:40]!r}",
            field=field,
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _text(field: str, value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > _MAX_FILTER_CHARS:
        raise InvalidInputError(
            f"{field} must be at most {_MAX_FILTER_CHARS} characters", field=field
        )
    return value.strip()


@dataclasses.dataclass(frozen=True, slots=True)
class SagaFilters:
    """The saga list's filters and page: what ``?name=&status=&tenant=&from=&to=`` ask for.

    Attributes:
        name: Only sagas of this type.
        status: Only sagas in this status.
        tenant: Only this tenant's sagas (a platform operator's filter; others see their own).
        created_from: Only sagas created at or after this time.
        created_to: Only sagas created before this time.
        limit: Sagas per page.
        cursor: Where the page starts (a previous page's ``next_cursor``).
    """

    name: str | None = None
    status: SagaStatus | None = None
    tenant: str | None = None
    created_from: dt.datetime | None = None
    created_to: dt.datetime | None = None
    limit: int = DEFAULT_PAGE_SIZE
    cursor: str | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> SagaFilters:
        """The filters of a query string.

        Raises:
            InvalidInputError: An unknown status, a malformed time or limit, an overlong
                name or tenant (each naming its field).
        """
        status_text = _text("status", query.get("status"))
        status = None
        if status_text is not None:
            try:
                status = SagaStatus(status_text)
            except ValueError:
                known = ", ".join(item.value for item in SagaStatus)
                raise InvalidInputError(
                    f"status must be one of: {known}; not {status_text[:40]!r}", field="status"
                ) from None
        limit_text = _text("limit", query.get("limit"))
        limit = DEFAULT_PAGE_SIZE
        if limit_text is not None:
            if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE_SIZE:
                raise InvalidInputError(
                    f"limit must be a whole number from 1 to {MAX_PAGE_SIZE}", field="limit"
                )
            limit = int(limit_text)
        return cls(
            name=_text("name", query.get("name")),
            status=status,
            tenant=_text("tenant", query.get("tenant")),
            created_from=parse_time("from", query.get("from")),
            created_to=parse_time("to", query.get("to")),
            limit=limit,
            cursor=_text("cursor", query.get("cursor")),
        )

    def query(self, *, cursor: str | None = None) -> str:
        """The query string of these filters on the page starting at ``cursor``."""
        pairs: list[tuple[str, str]] = []
        for key, value in (
            ("name", self.name),
            ("status", self.status.value if self.status else None),
            ("tenant", self.tenant),
            ("from", _local(self.created_from)),
            ("to", _local(self.created_to)),
            ("limit", str(self.limit) if self.limit != DEFAULT_PAGE_SIZE else None),
            ("cursor", cursor),
        ):
            if value:
                pairs.append((key, value))
        return urllib.parse.urlencode(pairs)

    def form_values(self) -> dict[str, str]:
        """The values the filter form shows (times as ``datetime-local`` text, in UTC)."""
        return {
            "name": self.name or "",
            "status": self.status.value if self.status else "",
            "tenant": self.tenant or "",
            "from": _local(self.created_from) or "",
            "to": _local(self.created_to) or "",
        }


def _local(value: dt.datetime | None) -> str | None:
    """A time as a ``datetime-local`` input shows it, in UTC."""
    if value is None:
        return None
    return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(timespec="minutes")


def parse_json_object(field: str, text: str | None, *, required: bool) -> dict[str, Any]:
    """A form field holding a JSON object (an evaluation's input or attributes).

    Raises:
        InvalidInputError: Blank when required, not JSON (with its line and column), or
            JSON that is not an object.
    """
    if text is None or not text.strip():
        if required:
            raise InvalidInputError(f"{field} is required: a JSON object", field=field)
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{field} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
            field=field,
        ) from None
    if not isinstance(value, dict):
        raise InvalidInputError(
            f"{field} must be a JSON object ({{...}}), not {type(value).__name__}", field=field
        )
    return value
