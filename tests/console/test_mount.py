"""Where the console lives in the API app: under /console only, and only when asked for."""

from __future__ import annotations

import httpx
import pytest

from dotmac_shared.business_logic.exceptions import InvalidInputError
from dotmac_shared.business_logic.http import create_app


async def test_only_console_paths_skip_the_api_key_check_when_the_console_is_mounted(
    session_factory,
):
    app = create_app(session_factory)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        assert (await client.get("/console/login")).status_code == 200
        assert (await client.get("/console/static/console.js")).status_code == 200
        front = await client.get("/console", follow_redirects=True)
        assert front.status_code == 200 and str(front.url).endswith(
            "/console/login?next=%2Fconsole%2Fsagas"
        )
        # Paths beside it keep needing a key: the API, and look-alikes of the prefix.
        for path in ("/v1/sagas", "/consoles", "/console-admin"):
            assert (await client.get(path)).status_code == 401, path


async def test_console_paths_need_an_api_key_like_any_other_when_the_console_is_left_out(
    session_factory,
):
    app = create_app(session_factory, console=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        assert (await client.get("/console/login")).status_code == 401


async def test_the_app_is_refused_when_the_console_secret_is_shorter_than_32_bytes(
    session_factory,
):
    with pytest.raises(InvalidInputError) as caught:
        create_app(session_factory, console_secret="too short")
    assert caught.value.field == "console_secret"
    create_app(session_factory, console_secret="x" * 32)  # long enough
