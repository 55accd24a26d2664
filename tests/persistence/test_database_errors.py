"""A database that cannot be reached is one PersistenceError naming it, password masked."""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from dotmac_shared.business_logic import InvalidInputError, PersistenceError
from dotmac_shared.business_logic.persistence import (
    create_session_factory,
    current_revisions,
    display_database_url,
    normalize_database_url,
    upgrade_database,
)
from tests.support.services import POSTGRES_URL, free_port

SECRET = "s3cret-Pa55"


@pytest.fixture(params=["sqlite", "postgresql"])
def unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(URL of a database that cannot be opened, the masked form its errors must name)."""
    if request.param == "sqlite":
        path = tmp_path / "no-such-folder" / "x.db"
        return f"sqlite:///{path}", str(path)
    port = free_port()
    return (
        f"postgresql://app:{SECRET}@127.0.0.1:{port}/x",
        f"postgresql+asyncpg://app:***@127.0.0.1:{port}/x",
    )


def _raised(call: Callable[[], Any]) -> PersistenceError:
    with pytest.raises(PersistenceError) as caught:
        call()
    return caught.value


def _assert_secret_absent(error: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    text = "".join(traceback.format_exception(error))  # the message and every chained cause
    assert SECRET not in text
    assert SECRET not in repr(error)
    if isinstance(error, PersistenceError):
        assert SECRET not in json.dumps(error.to_dict(), default=str)
    assert SECRET not in caplog.text


ENTRY_POINTS: dict[str, Callable[[str], Any]] = {
    "upgrade_database": upgrade_database,
    "current_revisions": current_revisions,
    "create_session_factory": create_session_factory,
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_error_names_the_masked_url_and_the_cause_when_the_database_is_unreachable(
    entry, unreachable, caplog
):
    url, shown = unreachable
    caplog.set_level(logging.DEBUG)
    error = _raised(lambda: ENTRY_POINTS[entry](url))
    assert error.message.startswith("cannot connect to database "), error.message
    assert shown in error.message
    assert "\n" not in error.message
    assert error.__cause__ is not None
    assert shown in error.metadata["url"]
    # The cause is stated, not just "failed": the driver's own words follow the URL.
    cause = error.message.split(f"{shown}: ", 1)[1]
    assert cause.strip()
    _assert_secret_absent(error, caplog)


def test_error_names_the_masked_url_when_the_server_has_no_such_database(caplog):
    # Trust authentication accepts any password, so the secret reaches the server.
    name = f"dotmac_missing_{uuid.uuid4().hex[:12]}"
    url = make_url(POSTGRES_URL).set(password=SECRET, database=name)
    caplog.set_level(logging.DEBUG)
    error = _raised(lambda: upgrade_database(url.render_as_string(hide_password=False)))
    assert display_database_url(url) in error.message
    assert name in error.message and "does not exist" in error.message
    _assert_secret_absent(error, caplog)


@pytest.mark.parametrize(
    "raw",
    [
        f"postgresql://app:{SECRET}@db.example:notaport/x",
        f"postgresql://app:{SECRET}@[::1/x",
        f"postgresql//app:{SECRET}@db.example/x",
    ],
)
def test_unparsable_url_is_refused_without_its_password(raw):
    with pytest.raises(InvalidInputError) as caught:
        normalize_database_url(raw)
    assert caught.value.field == "url"
    assert "app:***@" in caught.value.message
    assert SECRET not in "".join(traceback.format_exception(caught.value))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://app:{SECRET}@db/prod", "postgresql://app:***@db/prod"),
        (make_url(f"postgresql://app:{SECRET}@db/prod"), "postgresql://app:***@db/prod"),
        ("postgresql://app@db/prod", "postgresql://app@db/prod"),
        (f"postgresql://db/prod?password={SECRET}", "postgresql://db/prod?password=***"),
        ("sqlite:///data/app.db", "sqlite:///data/app.db"),
        (f"not a url, app:{SECRET}@db", "not a url, app:***@db"),
    ],
)
def test_display_url_masks_the_password_when_there_is_one(url, shown):
    assert display_database_url(url) == shown
