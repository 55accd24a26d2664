"""The policy engine loads no persistence library: importing it and evaluating policies.

Each case runs in a fresh interpreter, because this test process has long since imported
SQLAlchemy and Redis for the other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

#: Top-level packages of the database, Redis and migration libraries.
PERSISTENCE_LIBRARIES = ("sqlalchemy", "asyncpg", "aiosqlite", "redis", "glide", "alembic")

ENTRY_POINTS = [
    "dotmac_shared.business_logic.policies.core",
    "dotmac_shared.business_logic.policies",
    "dotmac_shared.business_logic",
]

# Imports the entry point, notes the persistence libraries loaded, then uses the engine the
# way an application would: compile and evaluate a policy, then check a plan's eligibility.
PROBE = textwrap.dedent(
    """
    import importlib, json, sys

    LIBRARIES = set({libraries!r})

    def loaded():
        return sorted({{name.split(".")[0] for name in sys.modules}} & LIBRARIES)

    importlib.import_module({entry_point!r})
    after_import = loaded()

    from dotmac_shared.business_logic.policies import PlanEligibilityEngine, PolicyContext
    from dotmac_shared.business_logic.policies.core import PolicyEngine, compile_policy

    document = {{
        "name": "demo.adults",
        "version": "1.0.0",
        "rules": [{{"name": "adult", "field": "age", "operator": "gte", "value": 18}}],
    }}
    policy = compile_policy(document)
    engine = PolicyEngine()
    engine.register_policy(document)
    eligibility = PlanEligibilityEngine().check_plan_eligibility(
        "residential_basic",
        {{
            "customer_type": "residential",
            "credit_score": 650,
            "outstanding_balance": 0.0,
            "location": {{"service_coverage": True}},
        }},
        PolicyContext(tenant_id="tenant123", user_id="user456", operation="plan_check"),
    )
    print(json.dumps({{
        "after_import": after_import,
        "after_use": loaded(),
        "compiled": policy.is_allowed({{"age": 30}}),
        "decision": engine.evaluate("demo.adults", {{"age": 17}}).decision.value,
        "eligibility": eligibility,
    }}))
    """
)


def probe(entry_point: str) -> dict[str, object]:
    """Run :data:`PROBE` for ``entry_point`` in a fresh interpreter; return what it printed."""
    code = PROBE.format(entry_point=entry_point, libraries=PERSISTENCE_LIBRARIES)
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    report: dict[str, object] = json.loads(completed.stdout)
    return report


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_engine_loads_no_persistence_library_when_imported_and_used(entry_point):
    report = probe(entry_point)

    assert report["after_import"] == []
    assert report["after_use"] == []
    assert report["compiled"] is True
    assert report["decision"] == "DENY"
    eligibility = report["eligibility"]
    assert isinstance(eligibility, dict)
    assert eligibility["eligible"] is True
    assert eligibility["decision"] == "ALLOW"


def test_io_names_load_their_library_when_first_used():
    code = textwrap.dedent(
        """
        import json, sys
        import dotmac_shared.business_logic.policies as policies

        before = "sqlalchemy" in sys.modules
        listed = {"SqlDecisionRecorder", "load_commission_rates", "RedisRateLimiter"} <= set(
            dir(policies)
        )
        recorder = policies.SqlDecisionRecorder
        limiter = policies.RedisRateLimiter
        print(json.dumps({
            "before": before,
            "listed": listed,
            "after": "sqlalchemy" in sys.modules and "redis" in sys.modules,
            "recorder": recorder.__name__,
            "limiter": limiter.__name__,
            "cached": "SqlDecisionRecorder" in vars(policies),
        }))
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr

    report = json.loads(completed.stdout)

    assert report == {
        "before": False,
        "listed": True,
        "after": True,
        "recorder": "SqlDecisionRecorder",
        "limiter": "RedisRateLimiter",
        "cached": True,
    }


@pytest.mark.parametrize(
    "module",
    [
        "dotmac_shared.business_logic",
        "dotmac_shared.business_logic.policies",
        "dotmac_shared.business_logic.ratelimit",
    ],
)
def test_unknown_name_raises_attribute_error_when_looked_up_on_a_lazy_package(module):
    package = __import__(module, fromlist=["__name__"])

    with pytest.raises(AttributeError, match="no_such_name"):
        _ = package.no_such_name


@pytest.mark.parametrize(
    "package",
    [
        "dotmac_shared.business_logic.policies",
        "dotmac_shared.business_logic.policies.core",
        "dotmac_shared.business_logic.ratelimit",
    ],
)
def test_implementation_modules_are_private_when_the_package_is_listed(package):
    import pkgutil

    module = __import__(package, fromlist=["__path__"])
    public = {
        info.name
        for info in pkgutil.iter_modules(module.__path__)
        if not info.name.startswith("_") and not info.ispkg
    }

    # The pytest plugin is loaded by its dotted path (``pytest -p ...``), so it stays public.
    assert public <= {"pytest_plugin"}
    assert not any(name.startswith("_") for name in module.__all__)
