"""``dotmac-bl saga``: list, show and trace sagas; move a stopped one on.

``history`` prints every transition; ``resume``, ``cancel``, ``retry-compensation``,
``mark-compensated``, ``retry-step`` and ``resolve`` act, each recorded in the saga's
history with who (``--operator``, default $USER) and why (``--reason``).
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from dotmac_shared.business_logic.cli._output import (
    DatabaseUrl,
    console,
    fail,
    format_value,
    run_async,
    session_factory,
)
from dotmac_shared.business_logic.operations._coordinator import shipped_coordinator
from dotmac_shared.business_logic.sagas import (
    ALL_TENANTS,
    SagaCoordinator,
    SagaEvent,
    SagaFailure,
    SagaResult,
    SagaSummary,
    TenantScope,
)

__all__ = ["print_outcome", "saga_app"]

saga_app = typer.Typer(
    no_args_is_help=True,
    help="Sagas: list, show, history; resume, cancel, and repair a saga that stopped.",
)

_STATUS_STYLE = {
    "running": "cyan",
    "compensating": "yellow",
    "completed": "green",
    "compensated": "yellow",
    "compensation_failed": "bold red",
    "incident": "bold red",
}


Tenant_ = Annotated[
    str | None, typer.Option("--tenant", metavar="TENANT", help="The sagas of this tenant.")
]
AllTenants_ = Annotated[
    bool,
    typer.Option("--all-tenants", help="Every tenant's sagas (and those without a tenant)."),
]


def _scope(tenant: str | None, all_tenants: bool) -> TenantScope:
    """Whose sagas a command acts on: exactly one of ``--tenant`` and ``--all-tenants``.

    No default: an operator says which tenant, or that the command is meant for all.
    """
    if all_tenants and tenant is not None:
        fail("give --tenant TENANT or --all-tenants, not both", code=2)
    if all_tenants:
        return ALL_TENANTS
    if tenant is None:
        fail("say whose sagas: --tenant TENANT, or --all-tenants for every tenant", code=2)
    return tenant


def _status(value: str) -> str:
    return f"[{_STATUS_STYLE.get(value, 'white')}]{value}[/]"


def _failure(failure: SagaFailure | None) -> str:
    return "" if failure is None else f"{failure.code}: {failure.message}"


def print_outcome(outcome: SagaResult) -> None:
    """Print a saga outcome (from execute, resume or cancel) in a few lines."""
    console.print(
        f"saga {escape(outcome['saga_id'])} ({escape(outcome['saga_name'])}): "
        f"{_status(outcome['status'])}",
        soft_wrap=True,
    )
    if outcome.get("failed_step"):
        console.print(f"  failed step: {escape(outcome['failed_step'])}", soft_wrap=True)
    if outcome.error is not None:
        console.print(f"  error: {escape(_failure(outcome.error))}", soft_wrap=True)
    if outcome.compensation_error is not None:
        console.print(
            f"  compensation error: {escape(_failure(outcome.compensation_error))}",
            soft_wrap=True,
        )
    if outcome.get("compensated_steps"):
        console.print(
            f"  compensated: {escape(', '.join(outcome['compensated_steps']))}", soft_wrap=True
        )


@saga_app.command("list")
def list_sagas(
    tenant: Tenant_ = None,
    all_tenants: AllTenants_ = False,
    status: Annotated[
        str | None,
        typer.Option(
            "--status",
            help=(
                "running, compensating, completed, compensated, compensation_failed or incident."
            ),
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    database_url: DatabaseUrl = None,
) -> None:
    """List a tenant's sagas (or every tenant's), newest first."""
    scope = _scope(tenant, all_tenants)

    async def fetch() -> list[SagaSummary]:
        async with session_factory(database_url, must_exist=True) as factory:
            return await SagaCoordinator(factory).list_sagas(
                tenant_id=scope, status=status, limit=limit
            )

    rows = run_async(fetch())
    table = Table(title="Sagas")
    for column in ("id", "saga", "status", "tenant", "created"):
        table.add_column(column, no_wrap=True)
    table.add_column("error", overflow="fold")
    for row in rows:
        table.add_row(
            escape(row["saga_id"]),
            escape(row["saga_name"]),
            _status(row["status"]),
            escape(row["tenant_id"] or "-"),
            format_value(row["created_at"]),
            escape(format_value(_failure(row.error), limit=80)),
        )
    console.print(table)
    console.print(f"{len(rows)} saga{'s' if len(rows) != 1 else ''}")


@saga_app.command("show")
def show_saga(
    saga_id: Annotated[str, typer.Argument(metavar="ID", help="The saga id.")],
    tenant: Tenant_ = None,
    all_tenants: AllTenants_ = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Show one saga: its record and every step."""
    scope = _scope(tenant, all_tenants)

    async def fetch() -> SagaResult:
        async with session_factory(database_url, must_exist=True) as factory:
            return await SagaCoordinator(factory).get_saga(saga_id, tenant_id=scope)

    saga = run_async(fetch())
    console.print(
        f"[bold]saga {escape(saga['saga_id'])}[/] ({escape(saga['saga_name'])} "
        f"v{escape(str(saga['saga_version']))}): {_status(saga['status'])}",
        soft_wrap=True,
    )
    for label, key in (
        ("tenant", "tenant_id"),
        ("user", "user_id"),
        ("correlation id", "correlation_id"),
        ("current step", "current_step"),
        ("failed step", "failed_step"),
        ("lease", "lease_owner"),
        ("lease expires", "lease_expires_at"),
        ("created", "created_at"),
        ("updated", "updated_at"),
        ("finished", "completed_at"),
    ):
        if key == "lease_owner" and saga.error is not None:
            console.print(f"  error: {escape(_failure(saga.error))}", soft_wrap=True)
        if saga.get(key) is not None:
            console.print(
                f"  {label}: {escape(format_value(saga[key], limit=2000))}", soft_wrap=True
            )
    console.print(
        f"  initial data: {escape(format_value(saga['initial_data'], limit=200))}",
        soft_wrap=True,
    )
    table = Table(title="Steps")
    for column in ("#", "step", "status", "attempts", "started", "finished", "result / error"):
        table.add_column(column, overflow="fold")
    for step in saga["steps"]:
        finished = step["compensated_at"] or step["completed_at"]
        attempts = str(step["attempts"])
        if step["compensation_attempts"]:
            attempts += f" (+{step['compensation_attempts']} undo)"
        detail = _failure(step.error) if step.error else format_value(step.result, limit=80)
        table.add_row(
            str(step["index"]),
            escape(step["name"]),
            _status(step["status"]),
            attempts,
            format_value(step["started_at"]),
            format_value(finished),
            escape(detail),
        )
    console.print(table)


@saga_app.command("resume")
def resume_saga(
    saga_id: Annotated[str, typer.Argument(metavar="ID", help="The saga id.")],
    tenant: Tenant_ = None,
    all_tenants: AllTenants_ = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Drive an unfinished saga on (or compensate a compensation_failed one again).

    A saga of a type this command does not know is refused before anything changes.
    """
    scope = _scope(tenant, all_tenants)

    async def resume() -> SagaResult:
        async with session_factory(database_url) as factory:
            return await shipped_coordinator(factory).resume_saga(saga_id, tenant_id=scope)

    print_outcome(run_async(resume()))


Operator_ = Annotated[
    str | None,
    typer.Option("--operator", help="Who acts (recorded in the saga's history); default: $USER."),
]
Reason_ = Annotated[
    str | None, typer.Option("--reason", help="Why (recorded in the saga's history).")
]
RequiredReason_ = Annotated[
    str, typer.Option("--reason", help="Why (required; recorded in the saga's history).")
]
Json_ = Annotated[bool, typer.Option("--json", help="Print the saga as JSON.")]
SagaId_ = Annotated[str, typer.Argument(metavar="ID", help="The saga id.")]


def _operator(operator: str | None) -> str:
    """``--operator``, else the login name ($USER)."""
    if operator:
        return operator
    name = os.environ.get("USER") or os.environ.get("USERNAME")
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = None
    if not name:
        fail("say who acts: --operator NAME (no $USER to default to)", code=2)
    return name


def _act(
    database_url: str | None,
    action: Callable[[SagaCoordinator], Awaitable[SagaResult]],
    as_json: bool,
) -> None:
    """Run a repair ``action`` on the shipped coordinator; print its outcome."""

    async def run() -> SagaResult:
        async with session_factory(database_url) as factory:
            return await action(shipped_coordinator(factory))

    outcome = run_async(run())
    if as_json:
        typer.echo(json.dumps(outcome.to_dict(), indent=2))
    else:
        print_outcome(outcome)


@saga_app.command("cancel")
def cancel_saga(
    saga_id: SagaId_,
    tenant: Tenant_ = None,
    all_tenants: AllTenants_ = False,
    operator: Operator_ = None,
    reason: Reason_ = None,
    as_json: Json_ = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Stop a running saga and compensate what it did.

    Refused for a saga past its pivot step (it can only go forward). A saga of a type this
    command does not know is refused before anything changes.
    """
    scope = _scope(tenant, all_tenants)
    who = _operator(operator)
    _act(
        database_url,
        lambda c: c.cancel_saga(saga_id, tenant_id=scope, operator=who, reason=reason),
        as_json,
    )


@saga_app.command("retry-compensation")
def retry_compensation(
    saga_id: SagaId_,
    reason: RequiredReason_,
    tenant: Tenant_ = None,
    all_tenants: AllTenants_ = False,
    operator: Operator_ = None,
    as_json: Json_ = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Run the failed compensation of a compensation_failed saga again (the cause is fixed)."""
    scope, who = _scope(tenant, all_tenants), _operator(operator)
    _act(
        database_url,
        lambda c: c.retry_compensation(saga_id, tenant_id=scope, operator=who, reason=reason),
        as_json,
    )


@saga_app.command("mark-compensated")
def mark_compensated(
    saga_id: SagaId_,
    step: Annotated[str, typer.Argument(metavar="STEP", help="The stuck step.")],
    reason: RequiredReason_,
    tenant: Tenant_ = None,
    all_tenants: AllTenants_ = False,
    operator: Operator_ = None,
    as_json: Json_ = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Mark the stuck step of a compensation_failed saga compensated (undone by hand); go on."""
    scope, who = _scope(tenant, all_tenants), _operator(operator)
    _act(
        database_url,
        lambda c: c.mark_step_compensated(
            saga_id, step, tenant_id=scope, operator=who, reason=reason
        ),
        as_json,
    )


@saga_app.command("retry-step")
def retry_step(
    saga_id: SagaId_,
    reason: RequiredReason_,
    tenant: Tenant_ = None,
    all_tenants: AllTenants_ = False,
    operator: Operator_ = None,
    as_json: Json_ = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Run the exhausted step of a saga in incident again and go forward (cause fixed)."""
    scope, who = _scope(tenant, all_tenants), _operator(operator)
    _act(
        database_url,
        lambda c: c.retry_step(saga_id, tenant_id=scope, operator=who, reason=reason),
        as_json,
    )


@saga_app.command("resolve")
def resolve_incident(
    saga_id: SagaId_,
    reason: RequiredReason_,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            metavar="JSON",
            help="The step's result as a JSON object (what later steps see).",
        ),
    ] = None,
    tenant: Tenant_ = None,
    all_tenants: AllTenants_ = False,
    operator: Operator_ = None,
    as_json: Json_ = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Close a saga's incident: its exhausted step was done by hand; the saga goes forward."""
    scope, who = _scope(tenant, all_tenants), _operator(operator)
    result: Any = None
    if output is not None:
        try:
            result = json.loads(output)
        except ValueError as exc:
            fail(f"--output is not JSON: {exc}", code=2)
        if not isinstance(result, dict):
            fail("--output must be a JSON object", code=2)
    _act(
        database_url,
        lambda c: c.resolve_incident(
            saga_id, tenant_id=scope, operator=who, reason=reason, output=result
        ),
        as_json,
    )


@saga_app.command("history")
def saga_history(
    saga_id: SagaId_,
    tenant: Tenant_ = None,
    all_tenants: AllTenants_ = False,
    as_json: Json_ = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Print a saga's history: every transition and operator action, oldest first."""
    scope = _scope(tenant, all_tenants)

    async def fetch() -> SagaResult:
        async with session_factory(database_url, must_exist=True) as factory:
            return await SagaCoordinator(factory).get_saga(saga_id, tenant_id=scope)

    saga = run_async(fetch())
    if as_json:
        typer.echo(json.dumps([event.to_dict() for event in saga.history], indent=2))
        return
    table = Table(title=f"History of saga {escape(saga_id)}")
    for column in ("#", "when", "what", "step", "try", "by", "detail"):
        table.add_column(column, overflow="fold")
    for event in saga.history:
        table.add_row(
            str(event.sequence),
            format_value(event.occurred_at),
            _event_kind(event),
            escape(event.step or ""),
            "" if event.attempt is None else str(event.attempt),
            escape(event.operator or event.worker or ""),
            escape(_event_detail(event)),
        )
    console.print(table)


def _event_kind(event: SagaEvent) -> str:
    if event.status is not None:
        return f"{event.kind.split('.')[0]} -> {_status(event.status)}"
    return f"[bold]{escape(event.kind)}[/]"


def _event_detail(event: SagaEvent) -> str:
    parts = []
    if event.reason:
        parts.append(f"reason: {event.reason}")
    if event.error is not None:
        parts.append(_failure(event.error))
    if event.data:
        parts.append(format_value(dict(event.data), limit=80))
    return "; ".join(parts)
