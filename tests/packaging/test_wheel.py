"""The wheel, installed as a user would, works from any directory: it ships the catalogue.

Builds the wheel from a copy of the sources (offline: the venv's setuptools, no build
isolation), installs it with ``--no-deps`` into a fresh venv that borrows this venv's
third-party packages through a ``.pth`` line (appended after its own site-packages, so
``plugin`` comes from the wheel), and runs ``dxsafety`` from a directory outside the
checkout with ``PYTHONPATH`` and ``DXSAFETY_*`` unset.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from plugin.rules import load_rules
from tests.cds.live import free_port, wait_for_discovery

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fhir_fixtures"
SOURCES = ("pyproject.toml", "README.md", "plugin", "rules", "fhir_fixtures")


@dataclass(frozen=True)
class Installed:
    venv: Path
    cwd: Path  # outside the checkout
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.venv / "bin" / "dxsafety"), *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def _build_wheel(tmp: Path) -> Path:
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy2(path, src / name)
    dist = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "-w", str(dist), str(src)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (wheel,) = dist.glob("dxsafety-*.whl")
    return wheel


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = _build_wheel(tmp)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    target = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(target), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )  # fmt: skip
    # the project's dependencies, after the venv's own site-packages (a .pth path line is
    # appended to sys.path; the .pth files in that directory, our editable hook, are not run)
    borrowed = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "dxsafety-test-deps.pth").write_text("\n".join(borrowed) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(target), "install", "-q", "--no-deps",
         "--no-index", str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    env = {
        k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("DXSAFETY_")
    }
    return Installed(venv=venv, cwd=cwd, env=env)


def test_the_installed_package_is_the_wheel_not_the_checkout(installed: Installed) -> None:
    out = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c",
         "import plugin, plugin.rules.catalogue as c; print(plugin.__file__); "
         "print(c.default_rules_dir())"],
        cwd=installed.cwd, env=installed.env, capture_output=True, text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    package, catalogue = Path(out[0]), Path(out[1])
    assert package.is_relative_to(installed.venv), package
    assert catalogue == package.parent / "catalogue"
    shipped = sorted(p.relative_to(catalogue) for p in catalogue.rglob("*") if p.is_file())
    in_repo = sorted(
        p.relative_to(ROOT / "rules") for p in (ROOT / "rules").rglob("*") if p.is_file()
    )
    assert shipped == in_repo


def test_version_names_the_distribution_and_the_catalogue(installed: Installed) -> None:
    result = installed.run("--version")
    assert result.returncode == 0, result.stderr
    expected = load_rules([ROOT / "rules"]).catalogue_version
    assert result.stdout.startswith("dxsafety 0.1.0 ")
    assert f"rule catalogue {expected}" in result.stdout
    assert str(installed.venv) in result.stdout


def test_scan_from_another_directory_finds_the_planted_positives(installed: Installed) -> None:
    want = {
        (f["patient_id"], f["rule_id"], f["index_ref"])
        for file in FIXTURES.glob("*/expected/findings.json")
        for f in json.loads(file.read_text())
    }
    result = installed.run("scan", str(FIXTURES), "--as-of", "2026-11-27", "--out", "f.json")
    assert result.returncode == 0, result.stderr
    found = json.loads((installed.cwd / "f.json").read_text())
    assert {(f["patient_id"], f["rule_id"], f["index_ref"]) for f in found} == want
    assert want


def test_rules_list_shows_the_shipped_catalogue(installed: Installed) -> None:
    result = installed.run("rules", "list")
    assert result.returncode == 0, result.stderr
    rules = load_rules([ROOT / "rules"]).rules
    assert rules
    for rule in rules:
        line = next((ln for ln in result.stdout.splitlines() if rule.id in ln), None)
        assert line is not None, rule.id
        assert "catalogue" in line and rule.version in line


def test_rules_test_runs_every_case_of_the_installed_catalogue(installed: Installed) -> None:
    # the cases that name a FHIR fixture find it shipped beside the catalogue
    result = installed.run("rules", "test")
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failed" in result.stdout, result.stdout
    cases = sum(
        len(yaml.safe_load(p.read_text(encoding="utf-8"))["cases"])
        for p in (ROOT / "rules").rglob("*.test.yaml")
    )
    assert f"in {cases} cases" in result.stdout, result.stdout


def test_serve_answers_discovery_from_another_directory(installed: Installed) -> None:
    port = free_port()
    log = installed.cwd / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(installed.venv / "bin" / "dxsafety"), "serve", "--port", str(port),
             "--database-url", f"sqlite:///{installed.cwd / 'db.sqlite'}"],
            cwd=installed.cwd, stdout=out, stderr=subprocess.STDOUT,
            env={**installed.env, "DXSAFETY_CDS_UNSIGNED_DEV_MODE": "true"},  # discovery w/o JWT
        )  # fmt: skip
    try:
        reply = wait_for_discovery(proc, port, log, allowance=120)
        assert reply.status_code == 200, reply.text
        services = reply.json()["services"]
        assert services and all(s["hook"] and s["id"] for s in services)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
