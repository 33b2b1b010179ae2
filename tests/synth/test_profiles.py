"""Site profiles (issue 13 item 1, issue 11 item 9): default unchanged, other sites write
other coding habits, labels stay the truth."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest

from plugin.synth import generate
from plugin.synth import profiles as P

AS_OF = date(2026, 6, 30)
# sha256 of the NDJSON + labels + excluded files of `dxsafety synth --patients 2000 --seed 7`
# measured on main before profiles existed (commit 83e0322): the default profile must not
# change a byte
DEFAULT_2000_SEED_7 = "bd6ff2f5b7c51dc5ecf432e7d10a83b0ac4dd9e08169a9dee52fd84c5bf6c382"


def _digest(out: Path) -> str:
    h = hashlib.sha256()
    for p in [*sorted(out.glob("*.ndjson")), out / "labels.csv", out / "excluded.csv"]:
        h.update(p.read_bytes())
    return h.hexdigest()


def _resources(out: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for p in sorted(out.glob("*.ndjson")) for line in p.open("rb")]


@pytest.fixture(scope="module")
def noisy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("noisy")
    generate(out, patients=600, seed=3, as_of=AS_OF, profile="noisy")
    return out


def test_default_profile_is_byte_identical(tmp_path: Path) -> None:
    generate(tmp_path, patients=2000, seed=7, as_of=AS_OF, workers=2, profile="default")
    assert _digest(tmp_path) == DEFAULT_2000_SEED_7


def test_recoding_keeps_patients_and_labels(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    generate(a, patients=400, seed=5, as_of=AS_OF, profile="default")
    generate(b, patients=400, seed=5, as_of=AS_OF, profile="metamorphic")
    assert (a / "labels.csv").read_bytes() == (b / "labels.csv").read_bytes()
    assert _digest(a) != _digest(b)  # ... and the chart is written differently


def test_sites_differ_in_case_mix(tmp_path: Path) -> None:
    rates = {}
    for name in ("academic", "community"):
        s = generate(tmp_path / name, patients=3000, seed=9, as_of=AS_OF, profile=name)
        rates[name] = Counter(r.scenario for r in s.labels)
    # community: fewer stroke work-ups, more miscoded stroke history (profile weights)
    assert rates["community"]["sp_workup_done"] < rates["academic"]["sp_workup_done"]
    assert (rates["community"]["sp_miscoded_stroke_history"]
            > rates["academic"]["sp_miscoded_stroke_history"])


def test_noisy_profile_writes_every_habit(noisy: Path) -> None:
    seen: Counter[str] = Counter()
    for res in _resources(noisy):
        rt = res["resourceType"]
        if rt == "Encounter":
            klass = res["class"]
            seen["class display only"] += "code" not in klass
            seen["class local code"] += klass.get("system") == P.LOCAL_CLASS
            seen["no offset"] += len(res["period"]["start"]) == 19
        elif rt == "Condition":
            systems = {c["system"] for c in res["code"]["coding"]}
            seen["WHO ICD-10"] += P.WHO_ICD10 in systems
            seen["ICD-9"] += P.ICD9 in systems
            seen["SNOMED only"] += systems == {"http://snomed.info/sct"}
        elif rt == "Observation":
            unit = res.get("valueQuantity", {}).get("unit")
            seen["converted unit"] += unit in ("g/L", "10*9/L", "mIU/L", "u[IU]/mL", "umol/L",
                                               "mmol/L", "K/uL", "ng/L")
            seen["range, no interpretation"] += ("referenceRange" in res
                                                 and "interpretation" not in res)
            seen["valueString"] += "valueString" in res
            answer = res.get("valueCodeableConcept", {}).get("coding", [{}])[0].get("code", "")
            seen["LOINC answer"] += answer.startswith("LA")
        elif rt == "DiagnosticReport" and "presentedForm" in res:
            seen["report text only"] += "conclusionCode" not in res
    missing = [h for h in ("class display only", "class local code", "no offset", "WHO ICD-10",
                           "ICD-9", "SNOMED only", "converted unit", "range, no interpretation",
                           "valueString", "LOINC answer", "report text only") if not seen[h]]
    assert missing == []


def test_report_text_has_findings_and_negated_look_alikes(noisy: Path) -> None:
    texts = [
        base64.b64decode(res["presentedForm"][0]["data"]).decode()
        for res in _resources(noisy)
        if res["resourceType"] == "DiagnosticReport" and "presentedForm" in res
    ]
    assert any("No evidence of acute infarct" in t or "No acute" in t for t in texts)
    assert any("cannot be excluded" in t or "History of prior infarct" in t
               for t in P._REPORT_TEXT["17621005"])
    assert all(t.count("IMPRESSION:") == 1 for t in texts)


def test_unit_conversion_keeps_the_result_against_its_range() -> None:
    res: dict[str, Any] = {
        "code": {"coding": [{"code": "718-7"}]},
        "valueQuantity": {"value": 10.5, "unit": "g/dL"},
        "referenceRange": [{"low": {"value": 12.0}, "high": {"value": 17.5}}],
    }
    P._convert(res, P.UNITS["718-7"][0])
    assert res["valueQuantity"]["value"] == 105 and res["valueQuantity"]["code"] == "g/L"
    rng = res["referenceRange"][0]
    assert (rng["low"]["value"], rng["high"]["value"]) == (120, 175)
    glucose: dict[str, Any] = {
        "code": {"coding": [{"code": "2345-7"}]},
        "valueQuantity": {"value": 180.0, "unit": "mg/dL"},
    }
    P._convert(glucose, P.UNITS["2345-7"][0])
    assert glucose["code"]["coding"][0]["code"] == "15074-8"  # the mmol/L LOINC
    assert glucose["valueQuantity"] == {"value": 10.0, "unit": "mmol/L",
                                        "system": "http://unitsofmeasure.org",
                                        "code": "mmol/L"}


def test_cli_profile_option(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "plugin.cli", "synth"]
    listed = subprocess.run([*cmd, "--list-profiles"], capture_output=True, text=True,
                            check=True)
    assert {"default", "academic", "community", "noisy", "metamorphic"} <= {
        line.split()[0] for line in listed.stdout.splitlines()}
    bad = subprocess.run([*cmd, "--patients", "5", "--out", str(tmp_path), "--profile", "x"],
                         capture_output=True, text=True, check=False)
    assert bad.returncode != 0 and "unknown --profile 'x'" in bad.stderr
