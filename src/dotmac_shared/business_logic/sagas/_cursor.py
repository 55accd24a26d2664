"""The opaque cursor of ``page_sagas``: the sort key of the last saga of a page.

Sagas are listed newest first by ``(created_at, saga_id)``: the id breaks ties between sagas
created at the same instant, so every saga has one place in the order and a page that starts
after a cursor neither repeats nor skips one. The cursor is that key, as URL-safe base64 of
a small JSON array (the same form ``GET /v1/sagas`` has always returned).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json

from dotmac_shared.business_logic.exceptions import InvalidInputError

__all__ = ["MAX_CURSOR_CHARS", "SagaPosition", "decode_cursor", "encode_cursor"]

#: A saga's place in the list: its creation time (aware, UTC) and its id.
SagaPosition = tuple[dt.datetime, str]
#: Longest cursor accepted (a real one is far shorter: a timestamp and a saga id).
MAX_CURSOR_CHARS = 512


def encode_cursor(created_at: dt.datetime, saga_id: str) -> str:
    """The cursor naming the saga created at ``created_at`` with id ``saga_id``."""
    raw = json.dumps([created_at.astimezone(dt.UTC).isoformat(), saga_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> SagaPosition:
    """The position a cursor of :func:`encode_cursor` names.

    Raises:
        InvalidInputError: The cursor was not made by :func:`encode_cursor` (field
            ``cursor``).
    """
    try:
        if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("not a cursor")
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, saga_id = json.loads(raw)
        if not isinstance(created, str) or not isinstance(saga_id, str):
            raise ValueError("not a cursor")
        when = dt.datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("not a cursor")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidInputError(
            "cursor is not one a previous page returned", field="cursor"
        ) from exc
    return when.astimezone(dt.UTC), saga_id
