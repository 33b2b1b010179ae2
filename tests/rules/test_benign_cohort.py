"""Benign-cohort check (Sigma's goodlog run): every ``stable`` rule over the shared data.

Every finding on the shared Synthea R4 bundles and the MIMIC-IV demo must be listed in the
reviewed ``rules/known_findings.csv`` (``rule_id;rule_title;patient_id;index_ref;note``), and
every listed finding must still fire. A rule change that floods reviewers (new findings) or
silently stops matching (stale entries) fails here; update the CSV only after reviewing the new
findings against the NDJSON and writing down in ``note`` why each is acceptable.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

import tests.paths as shared_paths
from plugin.fhir.read import ReadReport
from plugin.fhir.stage import iter_timelines
from plugin.rules import evaluate, load_rules

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "rules"
KNOWN = RULES / "known_findings.csv"
DATA = shared_paths.DATA
SOURCES = [DATA / "synthea-r4", DATA / "mimic-iv-demo-fhir"]
# Fixed scan time: after every absence window in both sources has closed (MIMIC dates are
# shifted into the 2100s), so the result does not depend on the day the test runs.
AS_OF = datetime(2300, 1, 1, tzinfo=UTC)

Key = tuple[str, str, str]  # (rule_id, patient_id, index_ref)


def scan() -> dict[Key, str]:
    ruleset = load_rules(RULES, statuses={"stable"})
    found: dict[Key, str] = {}
    for source in SOURCES:
        for timeline in iter_timelines(source, validate="fast", report=ReadReport()):
            for f in evaluate(ruleset, timeline, as_of=AS_OF):
                found[(f.rule_id, f.patient_id, f.index_ref)] = f.summary
    return found


def known() -> dict[Key, dict[str, str]]:
    with KNOWN.open(newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    out: dict[Key, dict[str, str]] = {}
    for row in rows:
        key = (row["rule_id"], row["patient_id"], row["index_ref"])
        assert key not in out, f"duplicate entry {key}"
        assert row["note"].strip(), f"entry {key} has no review note"
        out[key] = row
    return out


@pytest.fixture(scope="module")
def findings() -> dict[Key, str]:
    if not all(s.exists() for s in SOURCES):
        pytest.skip("shared data not present")
    return scan()


def test_no_unreviewed_findings(findings: dict[Key, str]) -> None:
    listed = known()
    new = sorted(k for k in findings if k not in listed)
    assert not new, "findings not in rules/known_findings.csv (review, then list):\n" + "\n".join(
        f"{rid};{pid};{ref}  # {findings[(rid, pid, ref)]}" for rid, pid, ref in new
    )


def test_no_stale_entries(findings: dict[Key, str]) -> None:
    stale = sorted(k for k in known() if k not in findings)
    assert not stale, "listed findings that no longer fire (remove or explain):\n" + "\n".join(
        ";".join(k) for k in stale
    )


def test_listed_titles_match_the_rules() -> None:
    titles = {r.id: r.title for r in load_rules(RULES).rules}
    for (rid, _pid, _ref), row in known().items():
        assert titles.get(rid) == row["rule_title"], rid


def test_the_check_covers_the_stable_catalogue(findings: dict[Key, str]) -> None:
    stable = load_rules(RULES, statuses={"stable"})
    assert len(stable) >= 8
    # the readmission and ICU-transfer rules do fire on the real MIMIC data
    fired = {rule.trigger for rid, _p, _r in findings if (rule := stable.get(rid)) is not None}
    assert {"IP-2", "ED-2"} <= fired
