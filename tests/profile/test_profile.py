"""``dxsafety profile``: the JSON a machine reads and the HTML a quality officer reads (rendered
in real headless Chromium), on the project's fixtures and on the shared MIMIC demo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from plugin.cli import main

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fhir_fixtures"
MIMIC = Path("/work/shared/data/mimic-iv-demo-fhir")
CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
SHOT = ROOT / "test-artifacts" / "profile.png"


def fields(data):
    return {f["field"]: f for f in data["fields"]}


def test_report_text_share_and_rule_inputs_on_the_text_fixtures(tmp_path, capsys):
    out = tmp_path / "p.json"
    assert main(["profile", str(FIXTURES / "tr3_text_affirmed"), str(FIXTURES / "tr5_text_negated"),
                 str(FIXTURES / "tr1_fit_no_colonoscopy"), "--json", str(out)]) == 0  # fmt: skip
    data = json.loads(out.read_text())
    assert data["patients"] == 3
    text = fields(data)["report.text"]
    assert (text["total"], text["mapped"]) == (2, 2)
    rules = {r["trigger"]: r for r in data["rules"]}
    # no Procedure, ServiceRequest or Encounter with a pulmonary code... but reports exist
    assert "procedure" in rules["TR-3"]["missing"] and rules["TR-3"]["evaluated"]
    assert "TR-3" in capsys.readouterr().out


@pytest.mark.skipif(not MIMIC.exists(), reason="shared MIMIC demo not mounted")
def test_mimic_profile_names_the_rules_it_cannot_evaluate(tmp_path):
    out = tmp_path / "mimic.json"
    assert main(["profile", str(MIMIC), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["patients"] == 100 and data["resources"]["Condition"] > 4000
    rules = {r["trigger"]: r for r in data["rules"]}
    assert rules["TR-3"]["inputs"]["report"] == 0 and "report" in rules["TR-3"]["missing"]
    assert not rules["TR-7"]["evaluated"] and "not evaluated" in rules["TR-7"]["data_gap"]
    assert fields(data)["encounter.setting"]["total"] == 401


def test_unmapped_values_come_with_a_count_and_an_example(tmp_path):
    (tmp_path / "Patient.ndjson").write_text('{"resourceType":"Patient","id":"u1"}\n')
    cond = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/u1"},
            "code": {"coding": [{"system": "http://example.org/local-dx", "code": "X1"}]},
            "onsetDateTime": "2025-01-02"}  # fmt: skip
    (tmp_path / "Condition.ndjson").write_text(json.dumps(cond) + "\n")
    out = tmp_path / "p.json"
    assert main(["profile", str(tmp_path), "--json", str(out)]) == 0
    f = fields(json.loads(out.read_text()))["condition.code_system"]
    assert f["mapped"] == 0
    (top,) = f["top_unmapped"]
    assert top["count"] == 1 and top["example"] == "Condition/c1" and "example.org" in top["value"]


def test_a_missing_source_is_an_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["profile", str(tmp_path / "nope")])
    assert exc.value.code != 0


@pytest.mark.browser
@pytest.mark.slow
def test_html_renders_in_chromium_with_its_charts(tmp_path):
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is missing: run scripts/system-deps")
    source = MIMIC if MIMIC.exists() else FIXTURES
    page_file = tmp_path / "profile.html"
    assert main(["profile", str(source), str(FIXTURES / "tr3_text_affirmed"),
                 "--html", str(page_file)]) == 0  # fmt: skip
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.goto(page_file.as_uri())
        assert page.locator("#coverage-chart svg").count() == 1
        assert page.locator("#period-chart svg").count() == 1
        box = page.locator("#coverage-chart svg").bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 100
        rules = page.locator("#rules").inner_text()
        assert "TR-3" in rules and "not evaluated" in rules
        assert "patients" in page.locator("#summary").inner_text()
        SHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOT), full_page=True)
        browser.close()


def test_a_kind_held_only_for_some_years_is_shown():
    from collections import Counter

    from plugin.profile import Profile

    p = Profile(source="x")
    p.by_year = {
        "encounter": Counter({2019: 30, 2020: 30, 2021: 30, 2015: 1}),
        "procedure": Counter({2021: 25}),
    }
    # 2015 has too few records to say anything; procedures start in 2021
    assert p.partial_periods() == {"procedure": [2019, 2020]}


def test_years_with_only_back_dated_conditions_are_not_a_gap():
    from collections import Counter

    from plugin.profile import Profile

    p = Profile(source="x")
    p.by_year = {
        "condition": Counter({2016: 40, 2020: 40, 2021: 40}),
        "encounter": Counter({2020: 30, 2021: 30}),
        "report": Counter({2020: 12, 2021: 12}),
    }
    assert p.partial_periods() == {}
