"""A sample of every resource type validates as FHIR R4 (fhir.resources R4B models)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from plugin.rules.validators import check_code
from plugin.synth import RESOURCE_TYPES, Summary
from plugin.synth import codes as C

SAMPLE = 60


@pytest.mark.parametrize("rtype", RESOURCE_TYPES)
def test_sample_validates_as_r4(
    rtype: str, population: tuple[Path, Summary], resources: dict[str, dict[str, Any]]
) -> None:
    of_type = [r for ref, r in resources.items() if ref.startswith(rtype + "/")]
    assert of_type, f"no {rtype} resources generated"
    model = get_fhir_model_class(rtype)
    for res in random.Random(rtype).sample(of_type, min(SAMPLE, len(of_type))):
        model.model_validate(res)  # raises on any invalid element


def test_files_are_bulk_layout_sorted_by_id(population: tuple[Path, Summary]) -> None:
    out, summary = population
    names = {p.name for p in out.glob("*.ndjson")}
    assert {f"{t}.000.ndjson" for t in RESOURCE_TYPES if summary.resources[t]} <= names
    for path in out.glob("*.ndjson"):
        ids = [line.split(b'"id":"', 1)[1][:36] for line in path.read_bytes().splitlines()]
        assert ids == sorted(ids), path.name


def test_coding_variety(resources: dict[str, dict[str, Any]]) -> None:
    """ICD-10 with and without dots, SNOMED-only conditions, several zones, date-only onsets."""
    icd = [c["code"] for r in resources.values() if r["resourceType"] == "Condition"
           for c in r["code"]["coding"] if c["system"] == C.ICD10]
    assert any("." in c for c in icd) and any("." not in c and len(c) > 3 for c in icd)
    snomed_only = [r for r in resources.values() if r["resourceType"] == "Condition"
                   and all(c["system"] == C.SNOMED for c in r["code"]["coding"])]
    assert snomed_only
    starts = [r["period"]["start"] for r in resources.values() if r["resourceType"] == "Encounter"]
    assert {s[19:] for s in starts} >= {"Z", "-05:00", "+01:00"}
    onsets = [r.get("onsetDateTime", "") for r in resources.values()
              if r["resourceType"] == "Condition"]
    assert any(len(o) == 10 for o in onsets) and any(len(o) > 10 for o in onsets)
    units = {r["valueQuantity"]["unit"] for r in resources.values()
             if r["resourceType"] == "Observation" and "valueQuantity" in r}
    assert {"Cel", "[degF]", "m[IU]/L", "g/dL"} <= units


def test_dates_end_well_before_as_of(resources: dict[str, dict[str, Any]]) -> None:
    latest = max(r["period"]["end"][:10] for r in resources.values()
                 if r["resourceType"] == "Encounter")
    assert latest < "2026-03-31"  # as-of 2026-06-30: every 60 d window closed with room


def _codes() -> list[tuple[str, str]]:
    dxs = [*C.CHRONIC.values(), *C.DIZZINESS, *C.HEADACHE, *C.STROKE, *C.ABDOMINAL_PAIN,
           *C.ED_BENIGN, *C.ADMIT_MEDICAL, *C.ADMIT_TRAUMA, *C.ADMIT_ELECTIVE, *C.PC_ROUTINE,
           C.APPENDICITIS, C.SEPSIS, C.MI, C.PE, C.CRC, C.FEVER, C.UTI, C.WEAKNESS, C.CHEST_PAIN,
           C.DYSPNOEA, C.COUGH, C.DECLINED, C.NONADHERENCE, C.HOSPICE, C.OLD_STROKE]
    out = [("snomed", d.snomed) for d in dxs if d.snomed]
    out += [("loinc", lab.loinc) for lab in C.LABS.values()]
    out += [("loinc", v[0]) for v in C.VITALS.values()]
    out += [("loinc", i.loinc) for i in C.IMAGING.values()]
    out += [("loinc", C.FIT[0]), ("snomed", C.FIT_POS[0]), ("snomed", C.FIT_NEG[0])]
    return out


def test_loinc_and_snomed_check_digits() -> None:
    problems = [why for system, code in _codes() if (why := check_code(system, code))]
    assert problems == []
