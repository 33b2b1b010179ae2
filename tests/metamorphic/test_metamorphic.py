"""Metamorphic tests (issue 11, item 8): each transformation rewrites the FHIR JSON the way
another site would write the same care, checks that it changed something, and the scan must
find exactly the same findings, by ``(patient, rule, index)``.

Applied to the clean ``fhir_fixtures/`` scenarios and a synthetic population of
``SYNTH_PATIENTS`` (``dxsafety synth``, default profile).
"""

from __future__ import annotations

import copy
import json

import pytest

from plugin.rules import RuleSet
from tests.metamorphic import transforms as t
from tests.metamorphic.conftest import FIXTURES, DataSet, findings, write

# transformation -> the data sets it is applied to, and must change (those where the habit
# can apply at all and touch what a finding rests on: the fixtures hold no numeric results, only
# dotted ICD codes, and their findings' diagnoses come through Condition.encounter)
TRANSFORMS: dict[str, tuple[t.Transform, tuple[str, ...]]] = {
    "icd_dots_stripped": (t.icd_dots_stripped, ("fixtures", "synth")),
    "icd_dots_added": (t.icd_dots_added, ("synth",)),
    "class_display_only": (t.class_display_only, ("fixtures", "synth")),
    "diagnosis_to_condition_encounter": (t.diagnosis_to_condition_encounter, ("synth",)),
    "diagnosis_to_reason_code": (t.diagnosis_to_reason_code, ("synth",)),
    "condition_encounter_to_diagnosis": (t.condition_encounter_to_diagnosis, ("fixtures", "synth")),
    # built with the rules' value sets (see transform_of)
    "icd_only": (t.one_system_only, ("synth",)),
    "snomed_only": (t.one_system_only, ("fixtures", "synth")),
    "unit_common_spelling": (t.unit_common_spelling, ("synth",)),
    "unit_converted": (t.unit_converted, ("synth",)),
    "interpretation_removed_with_range": (t.interpretation_removed_with_range, ("synth",)),
    "qualitative_as_string": (t.qualitative_as_string(False), ("fixtures", "synth")),
    "qualitative_as_string_no_interpretation": (
        t.qualitative_as_string(True),
        ("fixtures", "synth"),
    ),
    "offsets_changed": (t.offsets_changed, ("fixtures", "synth")),
    "file_order_reversed": (t.file_order_reversed, ("fixtures", "synth")),
    "file_split": (t.file_split, ("fixtures", "synth")),
}


PLACEMENT_ONLY = ("file_order_reversed", "file_split")  # same resources, other files


def changed_resources(before: t.Files, after: t.Files) -> set[str]:
    def by_ref(files: t.Files) -> dict[str, dict]:
        return {f"{r['resourceType']}/{r.get('id')}": r for rows in files.values() for r in rows}

    old, new = by_ref(before), by_ref(after)
    return {ref for ref in old.keys() | new.keys() if old.get(ref) != new.get(ref)}


def transform_of(name: str, ruleset: RuleSet) -> t.Transform:
    if name in ("icd_only", "snomed_only"):
        keep = name.split("_")[0]
        return t.one_system_only(t.Membership(ruleset.valuesets), keep)
    return TRANSFORMS[name][0]


def test_base_data_sets_give_their_findings(datasets: dict[str, DataSet]):
    """Written out as NDJSON, the fixtures find exactly their expected findings, and the
    synthetic population finds enough to compare."""
    want = {
        (f["patient_id"], f["rule_id"], f["index_ref"])
        for file in FIXTURES.glob("*/expected/findings.json")
        if file.parts[-3] != "bad"
        for f in json.loads(file.read_text())
    }
    assert datasets["fixtures"].findings == want
    assert len(datasets["synth"].findings) >= 20


@pytest.mark.parametrize(
    ("name", "dataset"), [(n, d) for n in sorted(TRANSFORMS) for d in TRANSFORMS[n][1]]
)
def test_transformation_keeps_the_findings(
    name: str, dataset: str, datasets: dict[str, DataSet], ruleset: RuleSet, tmp_path
):
    base = datasets[dataset]
    files = copy.deepcopy(base.files)
    changed = transform_of(name, ruleset)(files)
    assert changed > 0 and files != base.files, f"{name} changed nothing in {dataset}"
    if name not in PLACEMENT_ONLY:  # it must touch what some finding rests on
        touched = changed_resources(base.files, files) & base.cited
        assert touched, f"{name} changed no resource a finding in {dataset} rests on"
    got = findings(write(files, tmp_path / "data"), ruleset)
    lost, new = sorted(base.findings - got), sorted(got - base.findings)
    assert not lost and not new, f"{name} on {dataset}: lost {lost[:5]}, new {new[:5]}"
