"""Each row class of the look-up tables: code systems, the setting chain, dispositions, admit
sources, locations, planned markers, interpretations, qualitative answers."""

from __future__ import annotations

import pytest

from plugin.normalize import lookups
from plugin.timeline.codes import normalise


@pytest.mark.parametrize(
    ("uri", "code", "want"),
    [
        ("http://hl7.org/fhir/sid/icd-10-cm", "I63.9", "icd10:I639"),
        ("http://hl7.org/fhir/sid/icd-10", "I63.9", "icd10:I639"),  # WHO ICD-10
        ("https://hl7.org/fhir/sid/icd-10/", "i639", "icd10:I639"),  # scheme, slash, case
        ("urn:oid:2.16.840.1.113883.6.90", "I63.9", "icd10:I639"),
        ("urn:oid:2.16.840.1.113883.6.3", "I63.9", "icd10:I639"),  # WHO ICD-10 OID
        ("http://hl7.org/fhir/sid/icd-9-cm", "434.91", "icd9:43491"),
        ("urn:oid:2.16.840.1.113883.6.103", "434.91", "icd9:43491"),
        ("http://snomed.info/sct", " 422504002 ", "snomed:422504002"),
        ("urn:oid:2.16.840.1.113883.6.96", "422504002", "snomed:422504002"),
        ("http://loinc.org", "29771-3", "loinc:29771-3"),
        ("http://fhir.mimic.mit.edu/CodeSystem/diagnosis-icd10", "R42", "icd10:R42"),
        ("LN", "2345-7", "loinc:2345-7"),  # HL7 v2 coding-system names used as URIs
        ("I10", "I63.9", "icd10:I639"),
        ("http://example.org/local", "X1", "local:http://example.org/local:X1"),
    ],
)
def test_code_systems_and_code_variants(uri, code, want):
    assert str(normalise(uri, code)) == want


@pytest.mark.parametrize(
    ("links", "want"),
    [
        ({"class_code": "IMP"}, ("IP", "class.code")),
        ({"class_code": "EW EMER."}, ("IP", "class.code")),  # MIMIC admission class
        ({"class_code": "EU OBSERVATION"}, ("ED", "class.code")),  # observation in the ED
        ({"class_code": "SOME OBSERVATION"}, ("OBS", "class.code")),  # substring fall-back
        ({"class_code": "", "class_display": "Inpatient"}, ("IP", "class.display")),
        ({"class_display": "Emergency"}, ("ED", "class.display")),
        ({"class_code": "zz", "type_snomed": ("50849002",)}, ("ED", "type.snomed")),
        ({"serviceType_snomed": ("305351004",)}, ("ICU", "serviceType.snomed")),
        ({"location_kind": ("other", "ward")}, ("IP", "location.kind")),
        ({"admitSource": "emd"}, ("IP", "admitSource")),
        ({"class_code": "zz", "location_kind": ("other",)}, ("OTHER", "unknown")),
        ({}, ("OTHER", "unknown")),
    ],
)
def test_setting_chain_each_link_in_order(links, want):
    assert lookups.setting_chain(**links) == want


def test_an_earlier_link_wins():
    got = lookups.setting_chain(class_code="AMB", type_snomed=("50849002",))
    assert got == ("AMB", "class.code")


@pytest.mark.parametrize(
    ("value", "want"),
    [("home", "home"), ("1", "home"), ("20", "expired"), ("306689006", "home"),
     ("SKILLED NURSING FACILITY", "snf"), ("Transferred to other HOSPITAL", "transfer"),
     ("something else", "other")],
)  # fmt: skip
def test_dispositions_exact_then_words(value, want):
    assert lookups.disposition_group(value) == want


def test_admit_sources_mapped_kept_or_empty():
    assert lookups.admit_source_code("EMERGENCY ROOM") == "emd"
    assert lookups.admit_source_code("Hosp-Trans") == "hosp-trans"  # unlisted: kept, lower
    assert lookups.admit_source_code("INFORMATION NOT AVAILABLE") is None


@pytest.mark.parametrize(
    ("types", "name", "ref", "want"),
    [
        (("ICU",), "x", None, "icu"),
        (("ER",), "x", None, "ed"),
        (("PACU",), "x", None, "procedural"),
        ((), "Medical Intensive Care Unit (MICU)", None, "icu"),
        ((), "PACU", None, "procedural"),
        ((), "Post-Anesthesia Care", None, "procedural"),
        ((), "Emergency Department Observation", None, "observation"),
        ((), "Emergency Department", None, "ed"),
        ((), "West Wing 4", None, "ward"),
        ((), "Community Health Center", None, "other"),
        # MIMIC-IV demo: Locations referenced but not shipped; ids are uuid5 of the care unit
        ((), "Location/d4b315bc-5e39-5162-9d5c-dada4294b1a9",
         "Location/d4b315bc-5e39-5162-9d5c-dada4294b1a9", "procedural"),  # PACU
        ((), "?", "Location/501cd59a-cd8a-5f98-8298-2ca9c897d59f", "ed"),
        ((), "?", "Location/0fc2d23b-0e5b-5f91-8369-6d37301fea51", "ward"),  # Medicine
    ],
)  # fmt: skip
def test_location_kinds(types, name, ref, want):
    assert lookups.location_kind(types, name, ref) == want


def test_planned_markers_and_veto():
    assert lookups.is_planned(priority="EL")
    assert lookups.is_planned(class_code="ELECTIVE")
    assert lookups.is_planned(admit_source="elective")
    assert lookups.is_planned(texts=("Scheduled admission",))
    assert not lookups.is_planned(texts=("Unplanned scheduled return",))
    assert not lookups.is_planned(priority="UR", class_code="EW EMER.")


@pytest.mark.parametrize(
    ("code", "want"),
    [("H", ("high", None)), ("hh", ("high", None)), ("LL", ("low", None)),
     ("POS", ("abnormal", True)), ("NEG", ("normal", False)), ("IND", (None, None)),
     ("ZZ", (None, None))],
)  # fmt: skip
def test_interpretations(code, want):
    assert lookups.interpretation(code) == want


@pytest.mark.parametrize(
    ("system", "value", "want"),
    [
        ("snomed", "10828004", "positive"),
        ("snomed", "260373001", "positive"),
        ("snomed", "260385009", "negative"),
        ("snomed", "260415000", "negative"),
        ("snomed", "82334004", "indeterminate"),
        ("loinc", "LA6576-8", "positive"),
        ("loinc", "LA11883-8", "negative"),
        ("text", "POSITIVE", "positive"),
        ("text", " Detected. ", "positive"),
        ("text", "Not  detected", "negative"),
        ("text", "neg", "negative"),
        ("text", "Equivocal", "indeterminate"),
        ("text", "see comment", None),
        ("snomed", "22298006", None),
    ],
)
def test_qualitative_answers(system, value, want):
    assert lookups.qualitative(system, value) == want
