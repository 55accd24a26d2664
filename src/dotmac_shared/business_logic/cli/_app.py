"""``dotmac-bl``: the demo, database migrations and operator commands."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from sqlalchemy import inspect

from dotmac_shared.business_logic.cli._apikey import apikey_app
from dotmac_shared.business_logic.cli._billing import billing_app
from dotmac_shared.business_logic.cli._idempotency import idempotency_app
from dotmac_shared.business_logic.cli._notifications import notifications_app
from dotmac_shared.business_logic.cli._output import (
    DatabaseUrl,
    configure_logging,
    console,
    err_console,
    handle_errors,
    one_line,
    reset_logging,
    state,
)
from dotmac_shared.business_logic.cli._policy import policy_app
from dotmac_shared.business_logic.cli._saga import saga_app
from dotmac_shared.business_logic.cli._serve import serve
from dotmac_shared.business_logic.cli._worker import worker
from dotmac_shared.business_logic.exceptions import BusinessLogicError
from dotmac_shared.business_logic.persistence._migrate import (
    head_revisions,
    schema_branches,
    upgrade_database,
)
from dotmac_shared.business_logic.persistence._session import (
    create_engine,
    normalize_database_url,
)

__all__ = ["DatabaseUrl", "app", "console", "err_console", "main"]

# No local variables in --debug tracebacks: they would show database URLs with passwords.
app = typer.Typer(
    no_args_is_help=True,
    help="DotMac business logic: policies, idempotency, sagas.",
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema commands.")
app.add_typer(db_app, name="db")
app.add_typer(policy_app, name="policy")
app.add_typer(saga_app, name="saga")
app.add_typer(billing_app, name="billing")
app.add_typer(idempotency_app, name="idempotency")
app.add_typer(apikey_app, name="apikey")
app.add_typer(notifications_app, name="notifications")


@app.callback()
def root(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")
    ] = False,
    log_json: Annotated[
        bool,
        typer.Option(
            "--log-json",
            help="Write log records to stderr as JSON lines (tenant, correlation and saga ids).",
        ),
    ] = False,
) -> None:
    """DotMac business logic: policies, idempotency, sagas."""
    configure_logging(log_json=log_json, debug=debug)
    ctx.call_on_close(reset_logging)


async def _table_names(url: str | None) -> list[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            names: list[str] = await conn.run_sync(lambda c: inspect(c).get_table_names())
            return sorted(names)
    finally:
        await engine.dispose()


@db_app.command("upgrade")
def db_upgrade(
    database_url: DatabaseUrl = None,
    framework_only: Annotated[
        bool,
        typer.Option(
            "--framework-only",
            help="Create only the framework's tables (idempotency, sagas, policy decisions), "
            "not the ISP domain's.",
        ),
    ] = False,
) -> None:
    """Migrate the database to the latest schema (safe to run again)."""
    schema = "framework" if framework_only else "all"
    with handle_errors():
        revisions = upgrade_database(database_url, schema=schema)
    heads = head_revisions()
    descriptions = {branch.label: branch.description for branch in schema_branches()}
    for label, revision in revisions.items():
        console.print(
            f"{label} at revision [bold]{revision}[/] (head {heads.get(label, '?')}): "
            f"{descriptions.get(label, '')}",
            highlight=False,
        )


@app.command()
def demo(
    database_url: DatabaseUrl = None,
    customers: Annotated[
        int, typer.Option(min=0, max=200_000, help="Billable demo customers to seed.")
    ] = 3000,
) -> None:
    """Seed a tenant, run the spec's three examples and a billing run; print a summary."""
    from dotmac_shared.business_logic.cli._demo import run_demo

    with handle_errors():
        url = normalize_database_url(database_url)
        run_demo(url.render_as_string(hide_password=False), customers=customers, console=console)


app.command("worker")(worker)
app.command("serve")(serve)


def main() -> None:
    """Console-script entry point: one clear line on error, exit code 1 (unless --debug)."""
    try:
        app()
    except BusinessLogicError as exc:
        if state.debug:
            raise
        err_console.print(
            f"[bold red]error[/]: {escape(one_line(exc.message))}", soft_wrap=True, highlight=False
        )
        raise SystemExit(1) from exc
