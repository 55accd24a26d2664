from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from dotmac_shared.business_logic.cli import app
from dotmac_shared.business_logic.cli._output import state
from dotmac_shared.business_logic.exceptions import SagaNotFoundError
from dotmac_shared.business_logic.persistence import upgrade_database
from tests.cli.helpers import one_error_line


@pytest.fixture
def migrated_url(db_url: str) -> str:
    """An existing, empty database: read commands refuse a path with no database."""
    upgrade_database(db_url)
    return db_url


def run_main(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the console-script entry point in a fresh process (as `dotmac-bl` would)."""
    return subprocess.run(
        [sys.executable, "-c", "from dotmac_shared.business_logic.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_root_help_lists_every_command_group():
    result = run_main("--help")
    assert result.returncode == 0
    for name in ("demo", "db", "policy", "saga", "worker", "billing", "idempotency"):
        assert name in result.stdout
    assert "--debug" in result.stdout and "--log-json" in result.stdout


def test_console_script_prints_one_error_line_and_exits_1_when_business_error(migrated_url):
    result = run_main("saga", "show", "nope", "--all-tenants", "--database-url", migrated_url)
    assert result.returncode == 1
    assert one_error_line(result.stderr) == "error: no saga with id 'nope'"
    assert result.stdout == ""


def test_console_script_shows_the_traceback_when_debug(migrated_url):
    result = run_main(
        "--debug", "saga", "show", "nope", "--all-tenants", "--database-url", migrated_url
    )
    assert result.returncode == 1
    assert "SagaNotFoundError" in result.stderr
    assert len(result.stderr.splitlines()) > 1


def test_console_script_exits_2_when_usage_wrong():
    result = run_main("saga", "frobnicate")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_unexpected_errors_are_one_line_naming_the_type_when_not_debug(runner, db_url, monkeypatch):
    async def broken(self, *, batch_size: int = 1000) -> int:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(
        "dotmac_shared.business_logic.idempotency.IdempotencyManager.purge_expired", broken
    )
    result = runner.invoke(app, ["idempotency", "purge", "--database-url", db_url])
    assert result.exit_code == 1
    line = one_error_line(result.stderr)
    assert line == "error: RuntimeError: disk on fire (run with --debug for the traceback)"
    debug = runner.invoke(app, ["--debug", "idempotency", "purge", "--database-url", db_url])
    assert isinstance(debug.exception, RuntimeError)


def test_business_errors_are_one_line_when_the_database_url_is_unsupported(runner):
    result = runner.invoke(
        app, ["saga", "list", "--all-tenants", "--database-url", "mysql://localhost/x"]
    )
    assert result.exit_code == 1
    assert "mysql" in one_error_line(result.stderr)


def test_debug_lets_the_exception_through_when_business_error(runner, migrated_url):
    result = runner.invoke(
        app, ["--debug", "saga", "show", "nope", "--all-tenants", "--database-url", migrated_url]
    )
    assert result.exit_code == 1
    assert isinstance(result.exception, SagaNotFoundError)


def test_debug_state_is_reset_when_next_invocation_omits_it(runner, migrated_url):
    runner.invoke(
        app, ["--debug", "saga", "show", "nope", "--all-tenants", "--database-url", migrated_url]
    )
    result = runner.invoke(
        app, ["saga", "show", "nope", "--all-tenants", "--database-url", migrated_url]
    )
    assert result.exit_code == 1 and not state.debug
    one_error_line(result.stderr)


def test_log_json_handler_is_removed_when_the_command_ends(runner, migrated_url):
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    result = runner.invoke(
        app, ["--log-json", "saga", "list", "--all-tenants", "--database-url", migrated_url]
    )
    assert result.exit_code == 0, result.output
    assert root.handlers == handlers and root.level == level


def test_log_json_writes_each_record_as_a_json_line_with_context_fields(runner, migrated_url):
    result = runner.invoke(
        app,
        [
            "--log-json",
            "--debug",
            "saga",
            "show",
            "missing",
            "--all-tenants",
            "--database-url",
            migrated_url,
        ],
    )
    assert isinstance(result.exception, SagaNotFoundError)
    lines = [line for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines, result.stderr  # at least the migration / connection records
    for line in lines:
        record = json.loads(line)
        assert {"time", "level", "logger", "message"} <= record.keys()
        assert {"tenant_id", "correlation_id", "saga_id"} <= record.keys()


@pytest.mark.parametrize("group", ["policy", "saga", "billing", "idempotency", "db"])
def test_group_without_command_prints_help_when_no_args(runner, group):
    result = runner.invoke(app, [group])
    assert "Usage" in result.output
    assert "Traceback" not in result.output
