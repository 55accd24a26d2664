"""Public names are exported once, sorted, and really importable."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

PACKAGES = [
    "dotmac_shared.business_logic",
    "dotmac_shared.business_logic.cli",
    "dotmac_shared.business_logic.clock",
    "dotmac_shared.business_logic.console",
    "dotmac_shared.business_logic.exceptions",
    "dotmac_shared.business_logic.extension",
    "dotmac_shared.business_logic.http",
    "dotmac_shared.business_logic.idempotency",
    "dotmac_shared.business_logic.persistence",
    "dotmac_shared.business_logic.persistence.models",
    "dotmac_shared.business_logic.policies",
    "dotmac_shared.business_logic.policies.core",
    "dotmac_shared.business_logic.ratelimit",
    "dotmac_shared.business_logic.observability",
    "dotmac_shared.business_logic.operations",
    "dotmac_shared.business_logic.operations.models",
    "dotmac_shared.business_logic.operations.notifications",
    "dotmac_shared.business_logic.sagas",
    "dotmac_shared.standard_exception_handler",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_unique_and_importable(name):
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported)
    assert len(exported) == len(set(exported))
    for member in exported:
        assert hasattr(module, member), f"{name}.{member}"


def test_version_is_the_installed_distributions_when_imported():
    import importlib.metadata

    import dotmac_shared.business_logic as package

    assert package.__version__ == importlib.metadata.version("dotmac-business-logic")


def test_saga_names_are_exported_from_the_top_level_package_when_imported():
    import dotmac_shared.business_logic as package
    import dotmac_shared.business_logic.sagas as sagas

    for name in ("SagaCoordinator", "SagaContext", "SagaDefinition", "SagaStep", "SagaWorker"):
        assert getattr(package, name) is getattr(sagas, name)
        assert name in package.__all__


# Modules a package may keep public beside its facade: pytest loads the plugin by its path.
PUBLIC_MODULES = {"pytest_plugin"}
BUSINESS_LOGIC = Path(importlib.import_module("dotmac_shared.business_logic").__file__).parent


@pytest.mark.parametrize(
    "package",
    sorted(p.parent for p in BUSINESS_LOGIC.rglob("__init__.py") if p.parent != BUSINESS_LOGIC),
    ids=lambda p: str(p.relative_to(BUSINESS_LOGIC)),
)
def test_implementation_modules_are_private_when_behind_a_package_facade(package):
    public = sorted(
        m.name
        for m in package.glob("*.py")
        if not m.stem.startswith("_") and m.stem not in PUBLIC_MODULES
    )
    assert public == [], f"{package.name}: make these private behind __init__: {public}"
