"""The API module's public names are exported once, sorted, and really importable."""

from __future__ import annotations

import importlib


def test_api_module_exports_a_sorted_importable_all_when_imported():
    module = importlib.import_module("dotmac_shared.business_logic.http")
    assert list(module.__all__) == sorted(set(module.__all__))
    for name in module.__all__:
        assert hasattr(module, name), name
