"""``dotmac-bl policy``: list, show, diff, check, evaluate and test policies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from dotmac_shared.business_logic.cli._output import (
    console,
    format_value,
    handle_errors,
    load_mapping_file,
    one_line,
)
from dotmac_shared.business_logic.exceptions import InvalidInputError, PolicyDefinitionError
from dotmac_shared.business_logic.policies._eligibility import (
    DEFINITIONS_DIR,
    shipped_policy,
    shipped_policy_names,
)
from dotmac_shared.business_logic.policies.core import (
    CoverageReport,
    Policy,
    PolicyContext,
    PolicyDecision,
    PolicyEngine,
    PolicyResult,
    RuleResult,
    RuleSeen,
    load_policy_directory,
    load_policy_file,
    run_policy_test_cases,
)
from dotmac_shared.business_logic.policies.core._coverage import coverage_of_outcomes
from dotmac_shared.business_logic.policies.core._registry import POLICY_FILE_SUFFIXES
from dotmac_shared.business_logic.policies.core._testing import select_policies

__all__ = ["build_engine", "policy_app"]

policy_app = typer.Typer(
    no_args_is_help=True,
    help="Policies: list, show, diff, check, evaluate, run their test cases.",
)

PolicyDirs = Annotated[
    list[Path] | None,
    typer.Option(
        "--dir",
        help="A folder of policy files (YAML/JSON) to load as well; repeatable.",
        file_okay=False,
    ),
]
NoShipped = Annotated[
    bool,
    typer.Option("--no-shipped", help="Do not load the policies shipped with the package."),
]
Version = Annotated[str | None, typer.Option("--version", "-v", help="A version; the latest.")]

_DECISION_STYLE = {
    PolicyDecision.ALLOW: "bold green",
    PolicyDecision.DENY: "bold red",
    PolicyDecision.REQUIRE_APPROVAL: "bold yellow",
}


def build_engine(
    dirs: list[Path] | None = None, *, shipped: bool = True, only: str | None = None
) -> PolicyEngine:
    """An engine with the shipped policies (unless ``shipped`` is off) and every folder's.

    Args:
        dirs: Folders of policy files to load as well.
        shipped: Load the policies shipped with the package.
        only: The one shipped policy a command needs (the others are not loaded).

    Raises:
        PolicyDefinitionError: A folder is missing, a file is invalid, or a version clashes.
        InvalidInputError: Nothing would be loaded at all.
    """
    if not shipped and not dirs:
        raise InvalidInputError("--no-shipped needs at least one --dir", field="dir")
    engine = PolicyEngine()
    if shipped and only is None:
        engine.load_directory(DEFINITIONS_DIR)
    elif shipped and only in shipped_policy_names():
        engine.register_policy(shipped_policy(only))
    for directory in dirs or []:
        engine.load_directory(directory)
    return engine


@policy_app.command("list")
def list_policies(
    dirs: PolicyDirs = None,
    no_shipped: NoShipped = False,
) -> None:
    """List registered policies: every version, category, rules and test cases."""
    with handle_errors():
        engine = build_engine(dirs, shipped=not no_shipped)
    table = Table(title="Policies")
    for column in ("name", "versions", "category", "rules", "tests", "decides"):
        table.add_column(column, justify="right" if column in ("rules", "tests") else "left")
    for policy in engine.registry.list():
        versions = engine.registry.versions(policy.name)
        table.add_row(
            policy.name,
            ", ".join(versions),
            policy.category or "-",
            str(len(policy.document.rules)),
            str(len(policy.test_cases)),
            f"{policy.on_pass.value} / {policy.on_fail.value}",
        )
    console.print(table)
    console.print(f"{len(engine.registry.names())} policies, {len(engine.registry)} versions")


@policy_app.command("show")
def show_policy(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The policy name.")],
    version: Version = None,
    dirs: PolicyDirs = None,
    no_shipped: NoShipped = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML.")] = False,
) -> None:
    """Print a policy version's canonical document (the latest by default)."""
    with handle_errors():
        policy = build_engine(dirs, shipped=not no_shipped, only=name).registry.get(name, version)
    if as_json:
        typer.echo(json.dumps(policy.canonical, indent=2, ensure_ascii=False, default=str))
    else:
        typer.echo(f"# {policy.label}  sha256:{policy.content_hash}")
        typer.echo(policy.canonical_yaml(), nl=False)


@policy_app.command("diff")
def diff_policy(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The policy name.")],
    from_version: Annotated[str, typer.Argument(metavar="V1", help="The older version.")],
    to_version: Annotated[str, typer.Argument(metavar="V2", help="The newer version.")],
    dirs: PolicyDirs = None,
    no_shipped: NoShipped = False,
) -> None:
    """Show a unified diff between two versions of a policy."""
    with handle_errors():
        diff = build_engine(dirs, shipped=not no_shipped, only=name).registry.diff(
            name, from_version, to_version
        )
    if not diff:
        typer.echo(f"{name}: versions {from_version} and {to_version} have the same content")
        return
    typer.echo(diff, nl=not diff.endswith("\n"))


def _policy_files(paths: list[Path]) -> list[Path]:
    """The policy files named, and those directly in the folders named (sorted by name)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(
                entry
                for entry in sorted(path.iterdir())
                if entry.suffix.lower() in POLICY_FILE_SUFFIXES and entry.is_file()
            )
        elif path.is_file():
            files.append(path)
        else:
            raise InvalidInputError(f"{path}: no such file or folder", field="path")
    if not files:
        shown = ", ".join(str(path) for path in paths)
        raise InvalidInputError(f"no policy files (.yaml, .yml, .json) in {shown}", field="path")
    return files


def _check_file(file: Path) -> dict[str, Any]:
    """One file's report: its policy and findings (an invalid document is one error)."""
    try:
        policy = load_policy_file(file)
    except PolicyDefinitionError as exc:
        invalid = {
            "severity": "error",
            "code": "invalid-document",
            "policy": exc.policy_name,
            "version": None,
            "rule": exc.rule_name,
            "location": exc.location or "document",
            "message": one_line(exc.message),
        }
        return {
            "file": str(file),
            "policy": exc.policy_name,
            "version": None,
            "findings": [invalid],
        }
    return {
        "file": str(file),
        "policy": policy.name,
        "version": policy.version,
        "findings": [finding.to_dict() for finding in policy.findings],
    }


@policy_app.command("check")
def check_policies(
    paths: Annotated[
        list[Path],
        typer.Argument(metavar="PATH...", help="Policy files, or folders of policy files."),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON.")] = False,
) -> None:
    """Statically check policy documents; exit code 1 if any has an error.

    Finds rules that can never pass or always pass, unreachable thresholds, duplicate
    and shadowed rules, and, against a document's input_schema, unknown fields and
    operators that cannot apply to a field's type. Warnings alone exit with 0.
    """
    with handle_errors():
        reports = [_check_file(file) for file in _policy_files(paths)]
    counts = {"error": 0, "warning": 0}
    for report in reports:
        for finding in report["findings"]:
            counts[finding["severity"]] += 1
    if as_json:
        summary = {"files": reports, "errors": counts["error"], "warnings": counts["warning"]}
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        for report in reports:
            label = f"{report['policy']}@{report['version']}" if report["version"] else "invalid"
            title = f"{report['file']} ({label})"
            if not report["findings"]:
                console.print(f"[green]ok[/] {escape(title)}: no findings", soft_wrap=True)
                continue
            table = Table(title=escape(title))
            for column in ("severity", "code", "rule", "location", "message"):
                table.add_column(column, overflow="fold")
            for finding in report["findings"]:
                style = "bold red" if finding["severity"] == "error" else "yellow"
                table.add_row(
                    f"[{style}]{finding['severity']}[/]",
                    escape(finding["code"]),
                    escape(finding["rule"] or "-"),
                    escape(finding["location"]),
                    escape(finding["message"]),
                )
            console.print(table)
        console.print(
            f"{len(reports)} files checked: {counts['error']} errors, {counts['warning']} warnings"
        )
    if counts["error"]:
        raise typer.Exit(1)


def _rule_rows(table: Table, rule: RuleResult, depth: int = 0) -> None:
    mark = "[green]yes[/]" if rule.passed else "[red]no[/]"
    label = ("  " * depth + ("└ " if depth else "")) + rule.name
    expected = rule.expected
    if rule.spec.value_from is not None and expected is None:
        expected = f"<{rule.spec.value_from}>"
    table.add_row(
        escape(label),
        mark,
        escape(format_value(rule.actual) if rule.field is not None else "-"),
        escape(
            f"{rule.operator} {format_value(expected)}"
            if rule.field is not None and expected is not None
            else rule.operator
        ),
        escape(rule.message or ""),
    )
    for child in rule.children:
        _rule_rows(table, child, depth + 1)


def _print_result(result: PolicyResult) -> None:
    table = Table(title=f"{result.policy_name}@{result.policy_version}")
    for column in ("rule", "passed", "actual", "expected", "message"):
        table.add_column(column, overflow="fold")
    for rule in result.rule_results:
        _rule_rows(table, rule)
    console.print(table)
    passed = sum(1 for rule in result.rule_results if rule.passed)
    style = _DECISION_STYLE[result.decision]
    console.print(
        f"Decision: [{style}]{result.decision.value}[/] — "
        f"{passed}/{len(result.rule_results)} rules passed, score {result.score:.2f} "
        f"(threshold {result.threshold:.2f})",
        soft_wrap=True,
    )
    for reason in result.reasons:
        console.print(f"  reason: {escape(reason)}", soft_wrap=True, highlight=False)


@policy_app.command("eval")
def eval_policy(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The policy name.")],
    input_file: Annotated[
        Path, typer.Argument(metavar="INPUT_FILE", help="The input record (JSON or YAML).")
    ],
    context_file: Annotated[
        Path | None,
        typer.Option(
            "--context",
            help="A JSON/YAML context: tenant_id, user_id, operation, attributes, now.",
        ),
    ] = None,
    version: Version = None,
    dirs: PolicyDirs = None,
    no_shipped: NoShipped = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Evaluate a policy on an input file and explain every rule's outcome."""
    with handle_errors():
        engine = build_engine(dirs, shipped=not no_shipped, only=name)
        engine.get_policy(name, version=version)  # unknown policy: say so before reading files
        data = load_mapping_file(input_file, what="input")
        context = None
        if context_file is not None:
            context = PolicyContext.from_mapping(load_mapping_file(context_file, what="context"))
        result = engine.evaluate(name, data, context, version=version)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return
    _print_result(result)


_SEEN_STYLE = {
    RuleSeen.BOTH: "green",
    RuleSeen.PASS_ONLY: "bold red",
    RuleSeen.FAIL_ONLY: "bold red",
    RuleSeen.NEVER: "bold red",
}


def _print_coverage(report: CoverageReport, *, all_rules: bool) -> None:
    table = Table(title="Rule coverage (seen both passing and failing)")
    for column in ("policy", "rules", "covered", "%"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for policy in report.policies:
        percent = f"{policy.percent:.1f}"
        shown = percent if policy.covered == policy.total else f"[bold red]{percent}[/]"
        table.add_row(escape(policy.policy), str(policy.total), str(policy.covered), shown)
    console.print(table)
    rules = [rule for p in report.policies for rule in p.rules] if all_rules else report.uncovered
    if rules:
        detail = Table(title="Rules" if all_rules else "Uncovered rules")
        for column in ("policy", "rule", "location", "kind", "seen", "passed", "failed"):
            detail.add_column(column, overflow="fold")
        for rule in rules:
            style = _SEEN_STYLE[rule.seen]
            detail.add_row(
                escape(rule.policy),
                escape(rule.name),
                escape(rule.location),
                rule.kind,
                f"[{style}]{rule.seen.value}[/]",
                str(rule.passed),
                str(rule.failed),
            )
        console.print(detail)
    console.print(
        f"rule coverage: {report.covered}/{report.total} rules seen both ways "
        f"({report.percent:.1f}%)"
    )


@policy_app.command("test")
def test_policies(
    directory: Annotated[
        Path | None,
        typer.Argument(
            metavar="DIR", help="A folder of policy files; the shipped policies by default."
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option("--policy", help="Only this policy's test cases.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="List every test case.")] = False,
    coverage: Annotated[
        bool,
        typer.Option("--coverage", help="Report which rules the cases saw both pass and fail."),
    ] = False,
    fail_under: Annotated[
        float | None,
        typer.Option(
            "--fail-under",
            min=0,
            max=100,
            help="Exit 1 if rule coverage is below this percent (implies --coverage).",
        ),
    ] = None,
) -> None:
    """Run the test cases the policy documents ship; exit code 1 if any fails."""
    with handle_errors():
        policies: list[Policy] = load_policy_directory(directory or DEFINITIONS_DIR)
        outcomes = run_policy_test_cases(policies, name)
        if not outcomes:
            where = directory or "the shipped policies"
            raise InvalidInputError(f"no policy test cases in {where}", field="dir")
        report = coverage_of_outcomes(select_policies(policies, name), outcomes)
    failed = [outcome for outcome in outcomes if not outcome.passed]
    table = Table(title=f"Policy test cases ({directory or 'shipped policies'})")
    if verbose:
        for column in ("policy", "case", "result", "detail"):
            table.add_column(column, overflow="fold")
        for outcome in outcomes:
            mark = "[green]PASS[/]" if outcome.passed else "[bold red]FAIL[/]"
            table.add_row(
                escape(outcome.policy), escape(outcome.name), mark, escape(outcome.detail)
            )
    else:
        for column in ("policy", "cases", "passed", "failed"):
            table.add_column(column, justify="left" if column == "policy" else "right")
        per_policy: dict[str, list[int]] = {}
        for outcome in outcomes:
            counts = per_policy.setdefault(outcome.policy, [0, 0])
            counts[0 if outcome.passed else 1] += 1
        for label, (passed, failures) in per_policy.items():
            shown = f"[bold red]{failures}[/]" if failures else "0"
            table.add_row(escape(label), str(passed + failures), str(passed), shown)
    console.print(table)
    for outcome in failed:
        console.print(
            f"[bold red]FAIL[/] {escape(outcome.policy)} / {escape(outcome.name)}: "
            f"{escape(outcome.detail)}",
            soft_wrap=True,
        )
    console.print(f"{len(outcomes) - len(failed)} passed, {len(failed)} failed")
    below = False
    if coverage or fail_under is not None:
        _print_coverage(report, all_rules=verbose)
        below = fail_under is not None and not report.meets(fail_under)
        if below:
            console.print(
                f"[bold red]rule coverage {report.percent:.1f}% is below {fail_under:g}%[/]"
            )
    if failed or below:
        raise typer.Exit(1)


@policy_app.command("impact")
def impact_policy(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The policy name.")],
    from_version: Annotated[str, typer.Option("--from", help="The version in force.")],
    to_version: Annotated[str, typer.Option("--to", help="The candidate version.")],
    directory: Annotated[
        Path | None,
        typer.Argument(
            metavar="DIR",
            help="A folder of policy files loaded beside the shipped policies (e.g. the new "
            "version).",
        ),
    ] = None,
    decisions: Annotated[
        Path | None,
        typer.Option(
            "--decisions",
            help="A JSON Lines decision log: replay its inputs and contexts as recorded "
            "(redacted fields stay redacted).",
            dir_okay=False,
        ),
    ] = None,
    inputs: Annotated[
        Path | None,
        typer.Option(
            "--inputs", help="A JSON Lines file, one input object a line.", dir_okay=False
        ),
    ] = None,
    no_shipped: NoShipped = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Replay inputs through two versions of a policy: which decisions flip, and why."""
    from dotmac_shared.business_logic.cli._output import err_console
    from dotmac_shared.business_logic.policies.core import parse_input_lines

    with handle_errors():
        if (decisions is None) == (inputs is None):
            raise InvalidInputError(
                "give exactly one of --decisions LOG or --inputs FILE", field="inputs"
            )
        source = decisions if decisions is not None else inputs
        assert source is not None
        engine = build_engine(
            [directory] if directory is not None else None, shipped=not no_shipped, only=name
        )
        engine.get_policy(name, version=from_version)  # unknown versions: say so before reading
        engine.get_policy(name, version=to_version)
        try:
            # Bytes: json.loads decodes each line, so a bad byte is that line's problem.
            with source.open("rb") as handle:
                report = engine.impact(
                    name,
                    from_version,
                    to_version,
                    parse_input_lines(handle, decisions=decisions is not None, policy_name=name),
                )
        except OSError as exc:
            raise InvalidInputError(f"cannot read {source}: {exc}", field="inputs") from exc
    if as_json:
        data = report.to_dict()
        data["source"] = {"kind": "decisions" if decisions else "inputs", "path": str(source)}
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    total, flipped = report.total, report.flipped
    share = f" ({flipped / total:.2%})" if total else ""
    console.print(
        f"{escape(name)} {escape(from_version)} -> {escape(to_version)}: "
        f"{flipped} of {total} decisions flip{share}",
        soft_wrap=True,
    )
    if decisions is not None:
        console.print(
            "Inputs replayed as recorded: redacted fields stay redacted (rules reading them "
            "see the marker).",
            soft_wrap=True,
        )
    if report.transitions:
        table = Table(title="Flips by direction")
        table.add_column("direction")
        table.add_column("count", justify="right")
        for direction, count in report.transitions.items():
            table.add_row(direction, str(count))
        console.print(table)
    if report.by_rule:
        table = Table(title="Rules responsible")
        for column in ("rule", "flips", "directions"):
            table.add_column(column, justify="right" if column == "flips" else "left")
        for rule, impact in report.by_rule.items():
            directions = ", ".join(f"{key}: {value}" for key, value in impact.transitions.items())
            table.add_row(escape(rule), str(impact.flipped), directions)
        console.print(table)
    if report.unattributed:
        console.print(
            f"{report.unattributed} flips with no rule changing (threshold, on_fail or window)"
        )
    for sample in report.samples:
        console.print(
            f"  sample line {sample.line}: {sample.from_decision.value} -> "
            f"{sample.to_decision.value} (rules: {escape(', '.join(sample.rules) or '-')}) "
            f"{escape(format_value(sample.to_dict()['input'], limit=120))}",
            soft_wrap=True,
            highlight=False,
        )
    if report.skipped:
        console.print(f"{report.skipped} records of other policies skipped")
    for problem in report.problems:
        err_console.print(
            f"[yellow]line {problem.line}[/]: {escape(problem.message)}",
            soft_wrap=True,
            highlight=False,
        )
    if report.problem_count > len(report.problems):
        err_console.print(f"... {report.problem_count - len(report.problems)} more bad lines")
