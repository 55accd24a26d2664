"""Public names are exported once, sorted, and really importable."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = [
    "dotmac_shared.business_logic",
    "dotmac_shared.business_logic.exceptions",
    "dotmac_shared.business_logic.idempotency",
    "dotmac_shared.business_logic.persistence",
    "dotmac_shared.business_logic.persistence.models",
    "dotmac_shared.business_logic.policies",
    "dotmac_shared.business_logic.policies.core",
    "dotmac_shared.business_logic.ratelimit",
    "dotmac_shared.business_logic.observability",
    "dotmac_shared.business_logic.operations",
    "dotmac_shared.business_logic.operations.models",
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
