"""Pytest plugin: policy rule coverage of the shipped test cases, as a gate.

Load it with ``-p`` (on the command line or in ``addopts``), then use its two options::

    pytest -p dotmac_shared.business_logic.policies.pytest_plugin --policy-coverage
    pytest -p dotmac_shared.business_logic.policies.pytest_plugin \
        --policy-coverage=policies/ --policy-coverage-fail-under=100

At the end of the session it runs the test cases of every policy document in the folder
(the policies shipped with the package when no folder is given), prints the rule coverage
table (see :mod:`.core`) and fails the session when coverage is below the threshold.
Give the folder with ``=`` (``--policy-coverage=DIR``): a separate argument would be read
as a test path.

It is deliberately not a ``pytest11`` entry point: pytest rewrites the asserts of every
module in a distribution that declares one, and warns (an error under
``filterwarnings = error``) when such a module was imported before pytest started.

Only this module needs pytest; the coverage computation itself does not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = [
    "pytest_addoption",
    "pytest_sessionfinish",
    "pytest_terminal_summary",
]

#: The value of a bare ``--policy-coverage``: measure the shipped policies.
SHIPPED = "<shipped>"

_REPORT_KEY = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--policy-coverage[=DIR]`` and ``--policy-coverage-fail-under=N``."""
    group = parser.getgroup("dotmac-policy", "policy rule coverage (dotmac-business-logic)")
    group.addoption(
        "--policy-coverage",
        action="store",
        nargs="?",
        const=SHIPPED,
        default=None,
        metavar="DIR",
        help="Report which rules the policy documents' test cases saw both pass and fail "
        "(the shipped policies, or the folder DIR given as --policy-coverage=DIR).",
    )
    group.addoption(
        "--policy-coverage-fail-under",
        action="store",
        type=float,
        default=None,
        metavar="N",
        help="Fail the session when policy rule coverage is below N percent.",
    )


def _measure(config: pytest.Config) -> tuple[str, bool]:
    """The coverage text and whether it meets the threshold (errors fail it)."""
    # Imported here: the plugin is loaded in every session, the engine only when asked for.
    from dotmac_shared.business_logic.exceptions import BusinessLogicError
    from dotmac_shared.business_logic.policies._eligibility import DEFINITIONS_DIR
    from dotmac_shared.business_logic.policies.core import (
        load_policy_directory,
        run_policy_coverage,
    )

    option = config.getoption("policy_coverage")
    fail_under: float | None = config.getoption("policy_coverage_fail_under")
    directory = DEFINITIONS_DIR if option == SHIPPED else Path(option)
    try:
        report = run_policy_coverage(load_policy_directory(directory))
    except BusinessLogicError as exc:
        return f"cannot measure policy coverage of {directory}: {exc.message}", False
    text = f"policies in {directory}\n{report.format_text()}"
    if fail_under is None or report.meets(fail_under):
        return text, True
    return f"{text}\nFAIL: policy rule coverage {report.percent:.1f}% < {fail_under:g}%", False


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Measure coverage; turn a passing session into a failure when it is too low."""
    config = session.config
    if config.getoption("policy_coverage", None) is None:
        if config.getoption("policy_coverage_fail_under", None) is None:
            return
        config.option.policy_coverage = SHIPPED
    text, ok = _measure(config)
    config.stash[_REPORT_KEY] = text
    if not ok and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the coverage table measured at session finish."""
    text = terminalreporter.config.stash.get(_REPORT_KEY, None)
    if text is not None:
        terminalreporter.write_sep("=", "policy rule coverage")
        terminalreporter.write_line(text)
