"""``dotmac-bl``: the demo, database migrations and operator commands."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import inspect

from dotmac_shared.business_logic.exceptions import BusinessLogicError
from dotmac_shared.business_logic.persistence.migrate import head_revision, upgrade_database
from dotmac_shared.business_logic.persistence.session import (
    DATABASE_URL_ENV,
    create_engine,
    normalize_database_url,
)

app = typer.Typer(no_args_is_help=True, help="DotMac business logic: policies, idempotency, sagas.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema commands.")
app.add_typer(db_app, name="db")

console = Console()
err_console = Console(stderr=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option("--database-url", envvar=DATABASE_URL_ENV, help="SQLite file by default."),
]


async def _table_names(url: str | None) -> list[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            names: list[str] = await conn.run_sync(lambda c: inspect(c).get_table_names())
            return sorted(names)
    finally:
        await engine.dispose()


@db_app.command("upgrade")
def db_upgrade(database_url: DatabaseUrl = None) -> None:
    """Migrate the database to the latest schema (safe to run again)."""
    revision = upgrade_database(database_url)
    console.print(f"database at revision [bold]{revision}[/] (head {head_revision()})")


@app.command()
def demo(
    database_url: DatabaseUrl = None,
    customers: Annotated[
        int, typer.Option(min=0, max=200_000, help="Billable demo customers to seed.")
    ] = 3000,
) -> None:
    """Seed a tenant, run the spec's three examples and a billing run; print a summary."""
    from dotmac_shared.business_logic.cli.demo import run_demo

    url = normalize_database_url(database_url)
    run_demo(url.render_as_string(hide_password=False), customers=customers, console=console)


def main() -> None:
    """Console-script entry point: one clear line on error, exit code 1."""
    try:
        app()
    except BusinessLogicError as exc:
        err_console.print(f"[red]error[/]: {exc.message}")
        raise SystemExit(1) from exc
