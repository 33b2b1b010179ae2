"""FHIR level: ``dxsafety synth --spade-excess`` → ``dxsafety measure spade`` recovers the
planted excess; the report renders in Chromium; pair files are linted with file:line."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from plugin.cli import main
from plugin.errors import FatalError

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
SHOTS = ROOT / "test-artifacts" / "screenshots"


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("spade")
    pop = out / "pop"
    assert main(["synth", "--patients", "150", "--seed", "4", "--out", str(pop), "--workers",
                 "1", "--spade-excess", "dizziness_stroke:400", "--spade-cohort", "2500"]) == 0
    assert main(["measure", "spade", str(pop), "--html", str(out / "r.html"), "--json",
                 str(out / "r.json"), "--csv", str(out / "r.csv"), "--by", "quarter,site"]) == 0
    return out


def test_fhir_population_recovers_the_planted_excess(measured: Path) -> None:
    data = orjson.loads((measured / "r.json").read_bytes())
    pair = next(p for p in data["pairs"] if p["id"] == "dizziness_stroke")
    lo, hi = pair["ci95"]
    assert lo <= 400 <= hi, pair
    assert lo > 0
    assert pair["n"] >= 2500  # the cohort, plus any dizziness visits of the population
    sites = {s["site"] for s in pair["funnel"]["sites"]}
    assert {"Northside ED", "Hilltop ED"} <= sites  # Encounter.location read as the site
    assert any(s["by"] == "quarter" for s in pair["strata"])
    assert pair["observed_cases"] and all(c["day"] <= 30 for c in pair["observed_cases"])
    rows = (measured / "r.csv").read_text().splitlines()
    assert rows[0].startswith("pair_id,by,value,n,observed")
    assert any(r.startswith("dizziness_stroke,all,all,") for r in rows)


def test_bad_pair_files_name_file_and_line(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    src = (ROOT / "rules" / "spade" / "dizziness_stroke.yml").read_text()
    bad = tmp_path / "dizziness_stroke.yml"
    bad.write_text(src.replace("window_days: 30", "window_days: 30\nwindoww: 3"))
    with pytest.raises(FatalError) as exc:
        main(["measure", "lint", str(tmp_path)])
    assert exc.value.exit_code == 10
    line = src.splitlines().index("window_days: 30") + 2
    assert f"{bad}:{line}:1: error[R101] unknown key 'windoww'" in capsys.readouterr().err
    bad.write_text(src.replace("temporal: [31, 365]", "temporal: [10, 365]"))
    with pytest.raises(FatalError):
        main(["measure", "lint", str(tmp_path)])
    assert "S111" in capsys.readouterr().err
    assert main(["measure", "lint"]) == 0


def test_the_shipped_pairs_load_and_stay_out_of_the_rule_loader() -> None:
    from plugin.measure.pairs import load_pairs
    from plugin.rules import load_rules

    ids = {p.id for p in load_pairs()}
    assert {"dizziness_stroke", "headache_stroke", "chest_pain_ami",
            "abdominal_pain_appendicitis", "fever_dehydration_sepsis", "fall_stroke"} <= ids
    rules = load_rules(ROOT / "rules")
    assert rules.rules and not any(r.path.endswith(".yml") for r in rules.rules)


@pytest.mark.browser
def test_the_report_renders_in_chromium(measured: Path) -> None:
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is missing: run scripts/system-deps")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto((measured / "r.html").as_uri())
        pairs = orjson.loads((measured / "r.json").read_bytes())["pairs"]
        measured_pairs = [p for p in pairs if p["n"]]
        assert page.locator("svg").count() == 3 * len(measured_pairs)  # curve, trend, funnel
        for p in pairs:
            if not p["n"]:  # a pair without index visits says so, with no empty charts
                assert "nothing to measure" in page.locator(f"#{p['id']} + p + p").inner_text()
        headline = page.locator("#dizziness_stroke ~ p.headline").first.inner_text()
        assert "excess per 10,000 visits" in headline
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.locator("#dizziness_stroke").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "spade-report-small.png"), full_page=True)
        browser.close()


def test_duckdb_flat_tables_give_the_same_measures(measured: Path) -> None:
    """Differential: SPADE on the population engine's tables equals the per-patient run."""
    from plugin.measure import report as rpt
    from plugin.measure.pairs import load_pairs
    from plugin.measure.sql import measure_duckdb
    from plugin.population.flatten import connect, flatten

    con = connect()
    flatten(con, [measured / "pop"])
    rep = measure_duckdb(con, load_pairs(), source="duckdb", by=("quarter", "site"))
    got = rpt.to_json(rep)
    want = orjson.loads((measured / "r.json").read_bytes())
    assert got["patients"] == want["patients"]
    for a, b in zip(got["pairs"], want["pairs"], strict=True):
        for k in ("id", "n", "observed", "expected", "ci95", "strata", "daily", "funnel"):
            assert a[k] == b[k], (a["id"], k)
        assert [c["index_ref"] for c in a["observed_cases"]] == \
            [c["index_ref"] for c in b["observed_cases"]]  # fmt: skip
    assert got["lookback"] == want["lookback"]


def test_observed_visits_link_to_their_worklist_cases(measured: Path, tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from plugin.timeline.model import Finding
    from plugin.worklist.store import Store

    data = orjson.loads((measured / "r.json").read_bytes())
    case = next(p for p in data["pairs"] if p["id"] == "dizziness_stroke")["observed_cases"][0]
    db = f"sqlite:///{tmp_path}/wl.db"
    store = Store(db)
    t0 = datetime.fromisoformat(case["index_start"]).astimezone(UTC)
    store.upsert_findings([Finding(key="k-linked", patient_id=case["patient_id"], rule_id="sp1",
                                   rule_title="SP-1", level="high", index_ref=case["index_ref"],
                                   index_start=t0, index_end=None, window_end=t0)])  # fmt: skip
    store.close()
    out = tmp_path / "linked.json"
    assert main(["measure", "spade", str(measured / "pop"), "--json", str(out), "--by", "site",
                 "--store", db, "--worklist-url", "http://127.0.0.1:9"]) == 0  # fmt: skip
    pair = next(p for p in orjson.loads(out.read_bytes())["pairs"] if p["id"] == "dizziness_stroke")
    links = {c["index_ref"]: c["worklist"] for c in pair["observed_cases"]}
    assert links[case["index_ref"]] == "http://127.0.0.1:9/worklist/cases/k-linked"
    assert sum(v is not None for v in links.values()) == 1
    import sqlalchemy as sa

    from plugin.worklist import tables as t

    store = Store(db)
    with store.engine.connect() as conn:
        saved = conn.execute(sa.select(t.spade_runs.c.pairs)).scalars().all()
    store.close()
    assert len(saved) == 1  # shown on the worklist dashboard
    assert {p["id"]: p["n"] for p in saved[0]}["dizziness_stroke"] == pair["n"]
