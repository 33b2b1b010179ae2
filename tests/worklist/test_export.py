"""Exports: CSV, FHIR DetectedIssue (valid R4B), training labels."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import orjson
from fhir.resources.R4B.detectedissue import DetectedIssue

from plugin.worklist import cases, export
from plugin.worklist.saferdx import ReviewInput
from plugin.worklist.store import Store
from tests.worklist.factories import finding

MOD = ReviewInput(
    items=[5] * 12 + [6],
    harm="severe",
    harm_duration="permanent",
    missed_dx="posterior circulation stroke",
)
NO_MOD = ReviewInput(items=[2] * 13, harm="none", miscoded=True)


def _reviewed_store(store: Store, users) -> list:
    fs = [finding("p-mod", score=0.9), finding("p-no"), finding("p-open"), finding("p-none")]
    store.upsert_findings(fs)
    ids = [cases.find_id(store, f.key) for f in fs]
    cases.save_review(store, ids[0], MOD, by=users["rev1"], version=1)
    cases.save_review(store, ids[0], MOD, by=users["rev2"], version=2)
    cases.save_review(store, ids[1], NO_MOD, by=users["rev1"], version=1)
    cases.save_review(store, ids[2], MOD, by=users["rev1"], version=1)
    return fs


def test_csv_lists_reviewed_cases(store: Store, users) -> None:
    fs = _reviewed_store(store, users)
    buf = io.StringIO()
    assert export.write_csv(store, buf) == 3
    rows = {r["case_key"]: r for r in csv.DictReader(io.StringIO(buf.getvalue()))}
    assert set(rows) == {fs[0].key, fs[1].key, fs[2].key}
    assert rows[fs[0].key]["final_mod"] == "1" and rows[fs[0].key]["judgements"] == "6 6"
    assert rows[fs[0].key]["reviewers"] == "bob carol"
    assert rows[fs[1].key]["final_mod"] == "0" and rows[fs[1].key]["miscoded"] == "1"
    assert rows[fs[2].key]["final_mod"] == "" and rows[fs[2].key]["status"] == "second_review"


def test_detectedissues_validate_as_fhir_r4b(store: Store, users, tmp_path: Path) -> None:
    fs = _reviewed_store(store, users)
    out = tmp_path / "di.ndjson"
    assert export.write_detectedissues(store, out) == 3
    resources = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    for resource in resources:
        DetectedIssue.model_validate(resource)  # raises on invalid FHIR
    by_key = {r["identifier"][0]["value"]: r for r in resources}
    confirmed = by_key[fs[0].key]
    assert confirmed["status"] == "final" and confirmed["severity"] == "high"
    assert confirmed["code"]["coding"][0]["code"] == "missed-opportunity"
    assert confirmed["patient"] == {"reference": "Patient/p-mod"}
    assert {"reference": "Encounter/ip-p-mod"} in confirmed["implicated"]
    assert "posterior circulation stroke" in confirmed["detail"]
    assert by_key[fs[1].key]["code"]["coding"][0]["code"] == "no-missed-opportunity"
    assert by_key[fs[2].key]["status"] == "preliminary"


def test_labels_have_the_train_format(store: Store, users) -> None:
    """Labels hold reviewed cases only (unreviewed is unlabelled, never a negative), in the
    columns ``dxsafety train`` reads (issue 13)."""
    from plugin.worklist.labels_export import LABEL_COLUMNS, write_labels

    _reviewed_store(store, users)
    buf = io.StringIO()
    assert write_labels(store, buf) == 2  # the third finding was never judged
    reader = csv.DictReader(io.StringIO(buf.getvalue()))
    assert tuple(reader.fieldnames or ()) == LABEL_COLUMNS
    rows = {r["patient_id"]: r for r in reader}
    assert set(rows) == {"p-mod", "p-no"}
    assert rows["p-mod"]["label"] == "1" and rows["p-no"]["label"] == "0"
    assert rows["p-mod"]["index_ref"] == "Encounter/ed-p-mod"
    assert rows["p-mod"]["index_start"] == "2024-03-05T14:30:00+00:00"
    assert rows["p-mod"]["selection"] == "ranked" and rows["p-mod"]["weight"] == ""


def test_labels_are_read_by_the_trainer(store: Store, users, tmp_path: Path) -> None:
    """Close the loop: the ranker's own label reader takes the exported file."""
    from plugin.rank.labels import read_labels
    from plugin.worklist.labels_export import write_labels

    fs = [finding("p-mi"), finding("p-no")]
    store.upsert_findings(fs)
    mi = ReviewInput(items=[5] * 13, harm="moderate", missed_dx="myocardial infarction")
    for f, review in zip(fs, (mi, NO_MOD), strict=True):
        case_id = cases.find_id(store, f.key) or 0
        cases.save_review(store, case_id, review, by=users["rev1"], version=1)
        if review.is_mod:
            cases.save_review(store, case_id, review, by=users["rev2"], version=2)
    out = tmp_path / "labels.csv"
    with out.open("w", newline="") as fh:
        write_labels(store, fh)
    labels = read_labels(out)
    assert labels.reviewed
    (row,) = labels[("p-mi", "Encounter/ed-p-mi")]
    assert row.is_mod
    (row,) = labels[("p-no", "Encounter/ed-p-no")]
    assert not row.is_mod
