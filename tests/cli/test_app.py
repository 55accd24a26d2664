from __future__ import annotations

import sys

from typer.testing import CliRunner

from dotmac_shared.business_logic.cli import app
from dotmac_shared.business_logic.persistence import (
    FRAMEWORK_BRANCH,
    ISP_BRANCH,
    current_revisions,
    head_revisions,
)

runner = CliRunner()


def test_db_upgrade_migrates_to_head_and_is_repeatable(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    for _ in range(2):
        result = runner.invoke(app, ["db", "upgrade", "--database-url", url])
        assert result.exit_code == 0, result.output
        out = " ".join(result.output.split())  # Rich wraps long lines
        for label, head in head_revisions().items():
            assert f"{label} at revision {head} (head {head})" in out
    assert current_revisions(url) == head_revisions()


def test_db_upgrade_creates_only_the_framework_tables_when_framework_only(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    result = runner.invoke(app, ["db", "upgrade", "--framework-only", "--database-url", url])
    assert result.exit_code == 0, result.output
    assert FRAMEWORK_BRANCH in result.output and ISP_BRANCH not in result.output
    assert current_revisions(url) == head_revisions("framework")


def test_database_url_is_read_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DOTMAC_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "env.db").exists()


def test_demo_runs_the_three_examples_and_a_billing_run_twice_when_repeated(tmp_path):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    first = runner.invoke(app, ["demo", "--database-url", url, "--customers", "150"])
    assert first.exit_code == 0, first.output
    out = " ".join(first.output.split())  # Rich wraps long lines
    assert "Eligible: True" in out
    assert "from cache: False" in out and "from cache: True" in out
    assert "Status: completed" in out and "compensated" in out
    assert "150 invoices billed" in out
    # Step 5: a batch of the outbox e-mailed to a local SMTP server, which received it.
    assert "delivered 20 notices to smtp://127.0.0.1:" in out
    assert "the server received 20" in out and "Your invoice inv_" in out
    assert "@example.com" in out and "20 notices e-mailed" in out
    second = runner.invoke(app, ["demo", "--database-url", url, "--customers", "150"])
    assert second.exit_code == 0, second.output
    again = " ".join(second.output.split())
    assert "from cache: False" not in again  # the tenant comes from the cache now
    assert "150 invoices billed" in again


def test_demo_names_the_demo_extra_and_does_nothing_when_aiosmtpd_is_missing(tmp_path, monkeypatch):
    # A None entry makes `import aiosmtpd...` raise ModuleNotFoundError, as if not installed.
    monkeypatch.setitem(sys.modules, "aiosmtpd", None)
    monkeypatch.setitem(sys.modules, "aiosmtpd.controller", None)
    monkeypatch.delitem(sys.modules, "dotmac_shared.business_logic.cli._local_smtp", raising=False)
    database = tmp_path / "demo.db"

    result = runner.invoke(app, ["demo", "--database-url", f"sqlite:///{database}"])

    assert result.exit_code == 1
    message = " ".join(result.output.split())
    assert "needs the demo extra (aiosmtpd" in message
    assert "pip install 'dotmac-business-logic[demo]'" in message
    assert not database.exists()  # refused before seeding anything
