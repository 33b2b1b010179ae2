"""pyproject.toml lists the packages (so that rules/ can be mapped in as plugin.catalogue):
the list must name every package under plugin/, or the wheel silently lacks one."""

from __future__ import annotations

import tomllib
from pathlib import Path

from setuptools import find_namespace_packages

ROOT = Path(__file__).resolve().parents[2]


def test_pyproject_lists_every_package_and_the_catalogue():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = config["tool"]["setuptools"]
    found = {
        p
        for p in find_namespace_packages(where=str(ROOT), include=["plugin", "plugin.*"])
        if "__pycache__" not in p
    }
    shipped_data = {"plugin.catalogue": "rules", "plugin.fhir_fixtures": "fhir_fixtures"}
    assert set(setuptools["packages"]) == found | set(shipped_data)
    assert setuptools["package-dir"] == shipped_data
