"""The ranker on a SQL-engine scan (issue 12 item 6): the same scores as the Python engine.

``scan --engine duckdb --model M`` builds timelines for the flagged patients only
(:mod:`plugin.population.rank`); for every finding key its score, likely missed diagnoses,
reasons and model version must be those of ``scan --engine python --model M``. A model is
trained once on a small synthetic population (seed 3) and applied to another (seed 9).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from plugin.cli import main
from plugin.fhir.read import ReadReport
from plugin.fhir.stage import iter_timelines
from plugin.population import rank
from plugin.population.scan import scan_sql
from plugin.rank import Ranker, load_model
from plugin.rules import RuleSet
from plugin.scan import scan_population
from plugin.timeline.model import Finding

ROOT = Path(__file__).resolve().parents[2]
AS_OF = "2026-11-01"


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rank_scale")
    for name, n, seed in (("train", "600", "3"), ("pop", "300", "9")):
        assert main(["synth", "--patients", n, "--seed", seed, "--out", str(root / name)]) == 0
    assert main(["train", "--data", str(root / "train"), "--labels",
                 str(root / "train" / "labels.csv"), "--out", str(root / "model"),
                 "--n-estimators", "30"]) == 0  # fmt: skip
    return root


def _scored(rows: Iterable[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    return {
        r["key"]: (r["score"], r["missed_dx"], r["reasons"],
                   r["extra"].get("model_version"), r["extra"].get("score_kind"))
        for r in rows
    }  # fmt: skip


def _of(findings: Iterable[Finding]) -> dict[str, tuple[Any, ...]]:
    return _scored(
        {"key": f.key, "score": f.score, "missed_dx": [list(d) for d in f.missed_dx],
         "reasons": list(f.reasons), "extra": f.extra} for f in findings
    )  # fmt: skip


def test_cli_duckdb_with_model_scores_as_the_python_engine(work: Path, ruleset: RuleSet) -> None:
    """Was a usage error ("--model needs --engine python"); now the same scores by key as the
    Python engine's scan (its default batches)."""
    out = work / "duckdb.json"
    code = main(["scan", str(work / "pop"), "--engine", "duckdb", "--model", str(work / "model"),
                 "--as-of", AS_OF, "--workers", "1", "--out", str(out)])  # fmt: skip
    assert code == 0
    sql = _scored(json.loads(out.read_text()))
    as_of = datetime.fromisoformat(AS_OF).replace(tzinfo=UTC)
    model = load_model(work / "model")
    py = _of(scan_population(work / "pop", ruleset, as_of=as_of, model=model).findings)
    assert len(py) > 50, "more than one batch's explained top (50): the order matters"
    assert set(sql) == set(py)
    assert all(v[0] is not None and v[3] for v in sql.values()), "every finding scored"
    assert sum(1 for v in sql.values() if v[2]) >= 10, "the top of each batch is explained"
    assert sql == py


def test_model_and_store_build_each_flagged_timeline_once(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``scan --engine duckdb --model M --store URL``: each flagged patient's timeline is
    built once, for the score and the snapshot both (before: twice, the store's pass in one
    process), and the stored cases are the Python engine's: score, reasons, snapshot."""
    import sqlalchemy as sa

    from plugin.worklist import tables
    from plugin.worklist.store import Store

    built: list[str] = []
    real = rank._build

    def counting(pid: str, *args: Any) -> Any:
        built.append(pid)
        return real(pid, *args)

    monkeypatch.setattr(rank, "_build", counting)  # in this process: --workers 1
    rows = {}
    for engine in ("python", "duckdb"):
        url = f"sqlite:///{tmp_path}/{engine}.db"
        assert main(["scan", str(work / "pop"), "--engine", engine, "--model",
                     str(work / "model"), "--as-of", AS_OF, "--workers", "1", "--store", url,
                     "--out", str(tmp_path / f"{engine}.csv")]) == 0  # fmt: skip
        store = Store(url)
        f = tables.findings.c
        with store.engine.connect() as conn:
            rows[engine] = {r.key: (r.patient_id, r.score, r.reasons, r.snapshot)
                            for r in conn.execute(sa.select(
                                f.key, f.patient_id, f.score, f.reasons, f.snapshot))}  # fmt: skip
        store.close()
    flagged = {pid for pid, *_ in rows["duckdb"].values()}
    assert sorted(built) == sorted(flagged), "each flagged patient's timeline built once"
    assert len(rows["python"]) > 50
    stored = rows["duckdb"].values()
    assert all(score is not None and snap["events"] for _p, score, _r, snap in stored)
    assert rows["duckdb"] == rows["python"]


def test_worker_batches_read_their_lines_when_sent(
    work: Path, ruleset: RuleSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool gets a batch's lines a few batches ahead of the results, not every batch's
    at once (``Executor.map`` took them all: 3 GB of lines held at 100,000 patients); the
    results are the same."""
    monkeypatch.setattr(rank, "_POOL_MIN", 1)
    src = work / "pop"
    as_of = datetime.fromisoformat(AS_OF).replace(tzinfo=UTC)
    findings = scan_sql(src, ruleset, as_of=as_of).findings
    made: list[int] = []
    real = rank._task

    def recording(*args: Any) -> Any:
        made.append(1)
        return real(*args)

    monkeypatch.setattr(rank, "_task", recording)
    model = load_model(work / "model")
    batches = rank.flagged_batches(findings, src, model, workers=2, batch_size=5)
    first = next(batches)
    assert len(made) <= 5, f"{len(made)} batches' lines taken before the first result"
    pooled = [*first[0], *(f for batch, _ in batches for f in batch)]
    assert len(made) > 10, "enough batches to tell"
    alone = rank.score_flagged(findings, src, model, workers=1, batch_size=5)
    assert _of(pooled) == _of(alone)


class Recording:
    """The real model, recording the batches it is given (keys, in order): the ranker
    explains the top 50 of each batch, so scores match the Python engine's only if the
    batches do."""

    def __init__(self, model: Ranker) -> None:
        self.model = model
        self.batches: list[list[str]] = []

    def score_findings(self, findings: Sequence[Finding], timelines: Any) -> list[Finding]:
        self.batches.append([f.key for f in findings])
        return self.model.score_findings(findings, timelines)


def test_worker_pool_builds_the_python_engines_timelines(
    work: Path, ruleset: RuleSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker processes build exactly the timelines staging builds and score as the Python
    engine does, in the same batches, each in the same order."""
    monkeypatch.setattr(rank, "_POOL_MIN", 1)
    src = work / "pop"
    as_of = datetime.fromisoformat(AS_OF).replace(tzinfo=UTC)
    model = load_model(work / "model")
    findings = scan_sql(src, ruleset, as_of=as_of).findings
    flagged = {f.patient_id for f in findings}
    built = _built([src], flagged, model)
    staged = {
        tl.patient.id: tl
        for tl in iter_timelines(src, report=ReadReport())
        if tl.patient.id in flagged
    }
    assert built == staged
    rules = [r.id for r in ruleset.rules]
    sql = rank.score_flagged(findings, src, model, workers=2, batch_size=15, rule_order=rules)
    seen, ours = Recording(model), Recording(model)
    py = scan_population(src, ruleset, as_of=as_of, model=seen, batch_size=15).findings
    assert _of(sql) == _of(py)
    rank.score_flagged(findings, src, ours, workers=1, batch_size=15, rule_order=rules)
    assert len(seen.batches) >= 3
    assert ours.batches == seen.batches


def test_fixtures_bundles_and_bad_input(ruleset: RuleSet, work: Path) -> None:
    """The fixture folders: Bundles (read by the Python reader), a byte order mark, NDJSON
    inside .json, duplicate ids, malformed resources."""
    src = ROOT / "fhir_fixtures"
    as_of = datetime.fromisoformat(AS_OF).replace(tzinfo=UTC)
    model: Ranker = load_model(work / "model")
    findings = scan_sql(src, ruleset, as_of=as_of).findings
    assert findings
    sql = rank.score_flagged(findings, src, model, workers=1,
                             rule_order=[r.id for r in ruleset.rules])  # fmt: skip
    py = scan_population(src, ruleset, as_of=as_of, model=model).findings
    assert _of(sql) == _of(py)
    assert all(f.score is not None for f in sql)


def _built(roots: list[Path], flagged: set[str], model: Ranker) -> dict[str, Any]:
    pids = sorted(flagged)
    with rank._selection(roots, [pids], None) as selected:
        items = rank._items(selected, 0, pids)
    rank._init_worker(model, "fast", {})
    shared = rank._Shared()
    for r in selected.shared:
        shared.add(r)
    shared.finish()
    return {pid: rank._build(pid, items.get(pid, []), shared) for pid in flagged}


def test_references_of_every_form_reach_their_patient(tmp_path: Path, work: Path) -> None:
    """Conditional ``Patient?identifier=`` and ``_history`` references, absolute URLs, a
    shared Location, a Bundle on an NDJSON line and a Bundle file with ``urn:uuid:`` aliases:
    the flagged patients' timelines are staging's, and no other patient's resource leaks in."""
    icd = {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "R42"}]}

    def cond(cid: str, ref: str) -> dict[str, Any]:
        return {"resourceType": "Condition", "id": cid, "onsetDateTime": "2025-01-02",
                "code": icd, "subject": {"reference": ref}}  # fmt: skip

    def patient(pid: str, mrn: str) -> dict[str, Any]:
        ident = [{"system": "urn:mrn", "value": mrn}]
        return {"resourceType": "Patient", "id": pid, "gender": "female",
                "birthDate": "1950-01-01", "identifier": ident}  # fmt: skip

    encounter = {"resourceType": "Encounter", "id": "e1", "status": "finished",
                 "class": {"code": "EMER"}, "subject": {"reference": "Patient/p1"},
                 "period": {"start": "2025-01-02T10:00:00Z", "end": "2025-01-02T14:00:00Z"},
                 "location": [{"location": {"reference": "Location/l1"}}]}  # fmt: skip
    location = {"resourceType": "Location", "id": "l1", "name": "Medical ICU"}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:aaa", "resource": patient("p3", "3")},
        {"fullUrl": "urn:uuid:bbb", "resource": cond("c5", "urn:uuid:aaa")}]}  # fmt: skip
    line_bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": patient("p4", "4")}, {"resource": cond("c6", "Patient/p4")}]}  # fmt: skip
    files = {
        "Patient.ndjson": [patient("p1", "123"), patient("p2", "2"), patient("p5", "5")],
        "Condition.ndjson": [cond("c1", "Patient?identifier=urn:mrn|123"),
                             cond("c3", "Patient/p2/_history/3"),
                             cond("c4", "https://ehr.example/fhir/Patient/p2"),
                             cond("c7", "Patient/p5")],
        "Encounter.ndjson": [encounter],
        "Location.ndjson": [location],
        "Other.ndjson": [line_bundle],
    }  # fmt: skip
    for name, rows in files.items():
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "bundle.json").write_text(json.dumps(bundle))
    model = load_model(work / "model")
    staged = {tl.patient.id: tl for tl in iter_timelines(tmp_path, report=ReadReport())}
    flagged = {"p1", "p2", "p3", "p4"}
    built = _built([tmp_path], flagged, model)
    assert built == {pid: staged[pid] for pid in flagged}
    assert all(len(built[pid].events) >= 2 for pid in ("p1", "p2"))
    assert _built([tmp_path], {"p2"}, model) == {"p2": staged["p2"]}
