"""``dotmac-bl apikey``: create (the key is printed once), list and revoke API keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from dotmac_shared.business_logic.cli._output import (
    DatabaseUrl,
    console,
    err_console,
    format_value,
    run_async,
    session_factory,
)
from dotmac_shared.business_logic.cli._serve import require_http_extra

if TYPE_CHECKING:
    from dotmac_shared.business_logic.http import ApiKeyInfo

__all__ = ["apikey_app"]

apikey_app = typer.Typer(no_args_is_help=True, help="API keys of the HTTP API.")


def _api() -> Any:
    return require_http_extra("dotmac_shared.business_logic.http")[0]


@apikey_app.command("create")
def create(
    tenant: Annotated[str, typer.Option("--tenant", help="The tenant the key reaches.")],
    role: Annotated[
        str,
        typer.Option(
            "--role",
            help="operator; admin (also tenants, cancel); platform (every tenant, in the console).",
        ),
    ] = "operator",
    name: Annotated[str | None, typer.Option("--name", help="A label for the key.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a key and print it once: it is stored only as a digest."""
    api = _api()

    async def make() -> Any:
        async with session_factory(database_url) as factory:
            return await api.create_api_key(factory, tenant, role=role, name=name)

    created = run_async(make())
    err_console.print(
        f"API key {created.info.key_id} for tenant {escape(tenant)} ({created.info.role}); "
        "store it now, it is not shown again:",
        soft_wrap=True,
        highlight=False,
    )
    # The token alone on stdout, so that `KEY=$(dotmac-bl apikey create ...)` works.
    print(created.token)


@apikey_app.command("list")
def list_keys(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's.")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List keys (never their secrets), oldest first."""
    api = _api()

    async def fetch() -> list[ApiKeyInfo]:
        async with session_factory(database_url, must_exist=True) as factory:
            keys: list[ApiKeyInfo] = await api.list_api_keys(factory, tenant)
            return keys

    keys = run_async(fetch())
    table = Table(title="API keys")
    for column in ("key id", "tenant", "role", "name", "created", "revoked"):
        table.add_column(column, no_wrap=True)
    for key in keys:
        table.add_row(
            key.key_id,
            escape(key.tenant_id),
            key.role,
            escape(key.name or ""),
            format_value(key.created_at),
            format_value(key.revoked_at) if key.revoked_at else "",
        )
    console.print(table)


@apikey_app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="The key's id (from list).")],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    api = _api()

    async def run() -> ApiKeyInfo:
        async with session_factory(database_url, must_exist=True) as factory:
            info: ApiKeyInfo = await api.revoke_api_key(factory, key_id)
            return info

    info = run_async(run())
    console.print(
        f"API key {info.key_id} of tenant {escape(info.tenant_id)} revoked", highlight=False
    )
