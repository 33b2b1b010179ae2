"""Data sets for the metamorphic tests: the clean ``fhir_fixtures/`` scenarios and a small
synthetic population, each loaded once as ``Files`` (file name → resources), with the findings
of the untransformed data written out and scanned the same way."""

from __future__ import annotations

import contextlib
import io
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from plugin.cli import main
from plugin.fhir.read import ReadReport, iter_resources, list_input_files
from plugin.rules import RuleSet, load_rules
from plugin.scan import iter_findings
from tests.metamorphic.transforms import Files

REPO = Path(__file__).parents[2]
FIXTURES = REPO / "fhir_fixtures"
AS_OF = datetime(2026, 11, 27, tzinfo=UTC)  # every window of both data sets has closed
SYNTH_PATIENTS = 150  # every transformation scans it once: kept small for CI
Key = tuple[str, str, str]


@dataclass
class DataSet:
    name: str
    root: Path  # the original files
    files: Files
    findings: set[Key]  # of ``files`` written out unchanged
    cited: set[str]  # "Type/id" a finding rests on: index, outcome, evidence, their Conditions


def load(root: Path, skip: tuple[str, ...] = ()) -> Files:
    files: Files = {}
    for f in list_input_files(root):
        rel = f.relative_to(root)
        if rel.parts[0] in skip:
            continue
        name = str(rel).removesuffix(".gz").removesuffix(".json").removesuffix(".ndjson")
        rows = [item.resource for item in iter_resources(f) if item.resource is not None]
        files[name + ".ndjson"] = rows
    return files


def write(files: Files, out: Path) -> Path:
    if out.exists():
        shutil.rmtree(out)
    for name, rows in files.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return out


def findings(path: Path, ruleset: RuleSet, cited: set[str] | None = None) -> set[Key]:
    report = ReadReport()
    found = set()
    for _, hits in iter_findings(path, ruleset, as_of=AS_OF, report=report):
        found |= {(f.patient_id, f.rule_id, f.index_ref) for f in hits}
        if cited is not None:
            for f in hits:
                cited |= {f.index_ref, f.outcome_ref or "", *f.evidence}
    assert report.skipped == 0, report.summary_lines()
    return found


def with_conditions(files: Files, refs: set[str]) -> set[str]:
    """``refs`` and the Conditions that give their Encounters' diagnoses."""
    out = set(refs)
    for rows in files.values():
        for r in rows:
            if r.get("resourceType") == "Encounter" and f"Encounter/{r['id']}" in refs:
                out |= {
                    d["condition"]["reference"]
                    for d in r.get("diagnosis") or []
                    if isinstance(d.get("condition"), dict) and "reference" in d["condition"]
                }
            if r.get("resourceType") == "Condition":
                enc = (r.get("encounter") or {}).get("reference")
                if enc in refs:
                    out.add(f"Condition/{r['id']}")
    return out


@pytest.fixture(scope="session")
def ruleset() -> RuleSet:
    return load_rules(REPO / "rules")


@pytest.fixture(scope="session")
def datasets(ruleset: RuleSet, tmp_path_factory: pytest.TempPathFactory) -> dict[str, DataSet]:
    tmp = tmp_path_factory.mktemp("metamorphic")
    synth = tmp / "synth"
    with contextlib.redirect_stdout(io.StringIO()):
        code = main(
            [
                "synth",
                "--patients",
                str(SYNTH_PATIENTS),
                "--seed",
                "11",
                "--out",
                str(synth),
                "--workers",
                "1",
            ]
        )
    assert code == 0
    out = {}
    for name, root, skip in (("fixtures", FIXTURES, ("bad",)), ("synth", synth, ())):
        files = load(root, skip)
        cited: set[str] = set()
        found = findings(write(files, tmp / f"{name}-base"), ruleset, cited)
        out[name] = DataSet(name, root, files, found, with_conditions(files, cited))
    return out
