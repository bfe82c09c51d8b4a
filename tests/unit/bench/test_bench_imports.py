"""Every benchmark module imports: a moved helper must break `make test`, not the next `make bench`."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import bench

MODULES = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))


def test_the_benchmark_package_has_its_modules() -> None:
    assert {"run", "backfill", "rebuild", "profile", "system", "baselines"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    module = importlib.import_module(f"bench.{name}")
    assert module.__name__ == f"bench.{name}"
