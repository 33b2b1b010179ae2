"""Formula-safe exports with items 1-12 and notes, and the REDCap data dictionary (issue 15,
item 9)."""

from __future__ import annotations

import csv
import io
from dataclasses import replace

import pytest

from plugin.worklist import cases, export
from plugin.worklist.csvsafe import safe_cell
from plugin.worklist.saferdx import ReviewInput
from plugin.worklist.store import Store
from tests.worklist.conftest import csrf_of
from tests.worklist.factories import finding

EVIL = "=cmd|' /C calc'!A0"


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1+1", "@SUM(A1)", "\t=1", "\r=1"])
def test_safe_cell_defuses_formulas(text: str) -> None:
    assert safe_cell(text) == "'" + text


def test_safe_cell_leaves_data_alone() -> None:
    assert [safe_cell(v) for v in ("plain", "", None, 3, -2, 0.25, True)] == [
        "plain", "", "", "3", "-2", "0.25", "1"]  # fmt: skip


def _reviewed(store: Store, users) -> str:
    f = replace(finding("p1"), rule_title=EVIL, summary="+SUM(1)")
    store.upsert_findings([f, finding("p1", rule="ed-10d")])
    fid = cases.find_id(store, f.key) or 0
    review = ReviewInput(items=[3, 4, 5, 6, 7, 1, 2, 3, 4, 5, 6, 7, 2], harm="none",
                         missed_dx="@dissection", notes="-2 days late; =HYPERLINK(x)",
                         factors=["referrals"])  # fmt: skip
    cases.save_review(store, fid, review, by=users["rev1"], version=1)
    return f.key


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # database-agnostic
def test_case_csv_is_formula_safe(store: Store, users) -> None:
    _reviewed(store, users)
    buf = io.StringIO()
    export.write_csv(store, buf)
    row = next(csv.DictReader(io.StringIO(buf.getvalue())))
    assert row["rule_title"] == "'" + EVIL and row["missed_dx"] == "'@dissection"
    assert all(not v.startswith(("=", "+", "-", "@")) for v in row.values())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # database-agnostic
def test_review_csv_has_items_notes_and_episode_rules(store: Store, users) -> None:
    key = _reviewed(store, users)
    buf = io.StringIO()
    assert export.write_reviews(store, buf) == 1
    row = next(csv.DictReader(io.StringIO(buf.getvalue())))
    assert row["case_key"] == key and row["reviewer"] == "bob"
    assert [row[f"item{i}"] for i in range(1, 14)] == "3 4 5 6 7 1 2 3 4 5 6 7 2".split()
    assert row["notes"] == "'-2 days late; =HYPERLINK(x)" and row["is_mod"] == "0"
    assert row["rules"] == "rule-sp1;ed-10d" and row["final_mod"] == "0"
    assert row["factor_referrals"] == "1" and row["factor_tests"] == "0"
    dictionary = io.StringIO()
    export.write_review_dictionary(dictionary)
    fields = [r[0] for r in csv.reader(io.StringIO(dictionary.getvalue()))][1:]
    assert fields == list(export.REVIEW_FIELDS)  # the dictionary describes every column


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # database-agnostic
def test_review_export_is_admin_only(client_for, store: Store, users) -> None:
    _reviewed(store, users)
    assert client_for("bob").get("/worklist/admin/export/reviews").status_code == 403
    alice = client_for("alice")
    got = alice.get("/worklist/admin/export/reviews")
    assert got.status_code == 200 and "'-2 days late" in got.text
    assert alice.get("/worklist/admin/export/reviews-dictionary").text.startswith(
        "Variable / Field Name"
    )
    assert csrf_of(alice.get("/worklist/admin/users").text)
