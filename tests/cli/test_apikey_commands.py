"""``dotmac-bl apikey``: create prints the key once, list never shows secrets, revoke refuses."""

from __future__ import annotations

import asyncio

from dotmac_shared.business_logic.cli import app
from dotmac_shared.business_logic.http import verify_api_key
from dotmac_shared.business_logic.persistence import create_session_factory, engine_of
from tests.cli.helpers import flat


async def verify(url: str, token: str):
    factory = create_session_factory(url, migrate=False)
    try:
        return await verify_api_key(factory, token)
    finally:
        await engine_of(factory).dispose()


def test_create_prints_a_working_key_once_when_asked(runner, db_url):
    result = runner.invoke(
        app, ["apikey", "create", "--tenant", "t1", "--role", "admin", "--database-url", db_url]
    )
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("dmk_")
    info = asyncio.run(verify(db_url, token))
    assert info is not None and info.tenant_id == "t1" and info.role == "admin"
    listed = runner.invoke(app, ["apikey", "list", "--database-url", db_url])
    assert listed.exit_code == 0
    # dmk_<key id>_<secret>: the secret itself may hold "_", so split off the first two parts
    # only (its last "_"-part alone can be one letter, found in any table heading).
    secret = token.split("_", 2)[2]
    assert info.key_id in listed.stdout and secret not in listed.stdout


def test_revoke_makes_the_key_useless_when_run(runner, db_url):
    created = runner.invoke(app, ["apikey", "create", "--tenant", "t1", "--database-url", db_url])
    token = created.stdout.strip().splitlines()[-1]
    key_id = token.split("_")[1]
    result = runner.invoke(app, ["apikey", "revoke", key_id, "--database-url", db_url])
    assert result.exit_code == 0 and "revoked" in flat(result.stdout)
    assert asyncio.run(verify(db_url, token)) is None


def test_create_fails_in_one_line_when_the_role_is_unknown(runner, db_url):
    result = runner.invoke(
        app, ["apikey", "create", "--tenant", "t1", "--role", "root", "--database-url", db_url]
    )
    assert result.exit_code == 1
    assert "unknown role 'root'" in flat(result.stderr)


def test_revoke_fails_in_one_line_when_the_key_is_unknown(runner, db_url):
    runner.invoke(app, ["apikey", "create", "--tenant", "t1", "--database-url", db_url])
    result = runner.invoke(app, ["apikey", "revoke", "0" * 16, "--database-url", db_url])
    assert result.exit_code == 1 and "no API key" in flat(result.stderr)
