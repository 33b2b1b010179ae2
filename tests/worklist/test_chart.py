"""A readable case (issue 15, item 7): the timeline opens on the episode with the history
folded, evidence by name, local times with their offset, report texts with search, and the
deep link to the encounter in the EHR."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from plugin.config import Settings
from plugin.timeline.model import Event, Kind
from plugin.worklist import cases, display
from plugin.worklist.charts import timeline_svg
from plugin.worklist.store import Store
from plugin.worklist.web import mount
from tests.worklist.conftest import login
from tests.worklist.factories import T0, finding, timeline


def _old_risk_factor(patient: str) -> Event:
    return Event(patient=patient, t=T0 - timedelta(days=6 * 365), kind=Kind.CONDITION,
                 system="icd10", code="I10", source=f"Condition/htn-{patient}",
                 text="Essential hypertension")  # fmt: skip


def _report(patient: str) -> Event:
    return Event(patient=patient, t=T0 + timedelta(hours=2), kind=Kind.REPORT, system="loinc",
                 code="30799-1", source=f"DiagnosticReport/ct-{patient}", text="CT head",
                 narrative="No acute intracranial abnormality. HINTS exam not documented.",
                 offset_min=-240)  # fmt: skip


@pytest.fixture
def case_key(store: Store) -> str:
    tl = timeline("p1")
    events = tuple(e for e in tl.events if e.kind is not Kind.REPORT)
    tl = replace(tl, events=(_old_risk_factor("p1"), *events, _report("p1")))
    f = replace(finding("p1"), evidence=("Encounter/ed-p1", "Condition/htn-p1"))
    store.upsert_findings([f], {"p1": tl})
    return f.key


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # database-agnostic
def test_timeline_opens_on_the_episode_with_history_folded(store: Store, case_key: str) -> None:
    case = cases.get_case(store, case_key)
    assert case is not None
    svg = str(timeline_svg(case.finding["snapshot"], case.finding))
    years = sorted({int(y) for y in re.findall(r">(\d{4})-\d\d-\d\d</text>", svg)})
    assert years == [2024], years  # not stretched back six years
    assert "1 earlier event" in svg and "Essential hypertension" not in svg
    assert "index event" in svg


def test_local_time_keeps_the_records_offset() -> None:
    assert display.local_time("2024-03-05T18:30:00+00:00", -240) == "2024-03-05 14:30 -04:00"
    assert display.local_time("2024-07-01T12:00:00+00:00", None, "Europe/Berlin") == (
        "2024-07-01 14:00 +02:00"
    )
    assert display.local_time("2024-07-01T12:00:00+00:00", None, "No/Such_Zone").endswith("+00:00")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # database-agnostic
def test_case_page_is_readable(store: Store, users, case_key: str, tmp_path: Path) -> None:
    settings = Settings(database_url=str(store.url), rules_dir=tmp_path / "none", env="test",
                        worklist_ehr_link="https://ehr.example/chart?encounter={encounter}&mrn={patient}",
                        worklist_timezone="America/New_York")  # fmt: skip
    app = FastAPI()
    mount(app, settings, store=store)
    with TestClient(app) as client:
        login(client, "bob")
        html = client.get(f"/worklist/cases/{case_key}").text
    evidence = re.search(r'<ul class="evidence" id="evidence">(.*?)</ul>', html, re.S)
    assert evidence
    assert "Visit (emergency department)" in evidence.group(1) and "R42" in evidence.group(1)
    assert "Diagnosis: Essential hypertension [I10]" in evidence.group(1)
    # March 2024 in New York is UTC-5 before the 10th; the report carries its own -04:00
    assert "2024-03-05 09:30 -05:00" in html and "2024-03-05 12:30 -04:00" in html
    assert " UTC</dd>" not in html
    assert 'id="notes-search"' in html and "HINTS exam not documented" in html
    assert 'href="https://ehr.example/chart?encounter=ed-p1&amp;mrn=p1"' in html


def test_ehr_link_only_for_web_addresses(tmp_path: Path) -> None:
    from plugin.worklist.routes_cases import ehr_link

    bad = Settings(rules_dir=tmp_path, env="test", worklist_ehr_link="javascript:alert(1)")
    assert ehr_link(bad, {"index_ref": "Encounter/x", "patient_id": "p"}) is None
    good = Settings(rules_dir=tmp_path, env="test", worklist_ehr_link="https://e/{encounter}")
    assert ehr_link(good, {"index_ref": "Encounter/a b/c", "patient_id": "p"}) == (
        "https://e/a%20b%2Fc"
    )
