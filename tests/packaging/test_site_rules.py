"""The shipped catalogue is every command's default, from any directory; a site's own rules
(``--rules DIR``) load after it and override a catalogue rule with the same id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from plugin.cli import main
from plugin.errors import ExitCode, FatalError
from plugin.rules import load_rules
from plugin.rules.catalogue import default_rules_dir, rule_roots

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules"
FIXTURES = ROOT / "fhir_fixtures"
SP1 = RULES / "core" / "spade" / "benign_dizziness_headache_stroke_30d.yaml"
AS_OF = "2026-11-27"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site's rules: SP-1 (same id) widened to 32 days (the catalogue says 30)."""
    root = tmp_path / "site-rules"
    root.mkdir()
    text = SP1.read_text()
    assert "within: 30d" in text
    (root / SP1.name).write_text(text.replace("within: 30d", "within: 32d"))
    return root


def _scan(tmp_path: Path, *extra: str) -> list[dict[str, str]]:
    out = tmp_path / "findings.json"
    args = ["scan", str(FIXTURES), "--as-of", AS_OF, "--out", str(out), *extra]
    assert main(args) == 0
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def test_in_a_checkout_the_catalogue_is_the_repository_rules() -> None:
    assert default_rules_dir() == RULES


def test_a_root_named_twice_loads_once() -> None:
    assert rule_roots([RULES, RULES / "."]) == [RULES]
    assert rule_roots([RULES], use_catalogue=False) == [RULES]


def test_scan_from_another_directory_uses_the_catalogue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no rules/ here: the default used to be ./rules
    found = _scan(tmp_path)
    want = {
        (f["patient_id"], f["rule_id"], f["index_ref"])
        for file in FIXTURES.glob("*/expected/findings.json")
        for f in json.loads(file.read_text())
    }
    assert {(f["patient_id"], f["rule_id"], f["index_ref"]) for f in found} == want


def test_a_site_rule_overrides_the_catalogue_rule_with_its_id(
    tmp_path: Path, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sp1 = load_rules(SP1).rules[0].id
    before = [f for f in _scan(tmp_path) if f["rule_id"] == sp1]
    after = [f for f in _scan(tmp_path, "--rules", str(site)) if f["rule_id"] == sp1]
    # the stroke 31 d 1 h after the visit is inside the widened window only; none doubled
    assert len(after) == len(before) + 1
    assert len({f["key"] for f in after}) == len(after)
    assert {f["patient_id"] for f in after} - {f["patient_id"] for f in before}


def test_rules_list_shows_each_rules_origin_and_version(
    site: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["rules", "list", str(site)]) == 0
    lines = capsys.readouterr().out.splitlines()
    ruleset = load_rules([RULES, site])
    for rule in ruleset.rules:
        line = next(ln for ln in lines if rule.id in ln)
        origin = "site-1" if rule.path.startswith(str(site)) else "catalogue"
        assert f" {origin} " in line and rule.version in line, (rule.id, line)
    assert f"site-1: {site}" in lines
    assert sum(" site-1 " in ln for ln in lines) == 1  # the one overridden rule


def test_no_catalogue_needs_a_rules_directory() -> None:
    with pytest.raises(FatalError) as info:
        main(["scan", str(FIXTURES), "--no-catalogue"])
    assert info.value.exit_code == ExitCode.USAGE


def test_version_names_the_distribution_and_the_catalogue(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("dxsafety ")
    assert f"rule catalogue {load_rules([RULES]).catalogue_version}" in out


def test_invalid_site_rules_print_each_problem_at_its_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / SP1.name).write_text(SP1.read_text().replace("within: 30d", "withn: 30d"))
    with pytest.raises(FatalError) as info:
        main(["scan", str(FIXTURES), "--rules", str(bad)])
    assert info.value.exit_code == ExitCode.RULES_INVALID
    err = capsys.readouterr().err
    assert f"{bad / SP1.name}:" in err and ": error[R101] unknown key 'withn'" in err


def test_settings_name_the_same_roots_for_serve(
    tmp_path: Path, site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve --rules`` becomes DXSAFETY_SITE_RULES for its workers (os.pathsep-separated)."""
    from plugin.cli.serve import _env
    from plugin.config import Settings

    other = tmp_path / "other"
    assert Settings().rule_roots() == [RULES]
    monkeypatch.setenv("DXSAFETY_SITE_RULES", _env([site, other]))
    assert Settings().rule_roots() == [RULES, site, other]
    assert Settings(site_rules=[RULES]).rule_roots() == [RULES]
