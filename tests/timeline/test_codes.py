import pytest

from plugin.timeline.codes import normalise, parse_code, system_name
from plugin.timeline.model import Code


@pytest.mark.parametrize(
    ("uri", "short"),
    [
        ("http://hl7.org/fhir/sid/icd-10-cm", "icd10"),
        ("http://hl7.org/fhir/sid/icd-10", "icd10"),
        ("urn:oid:2.16.840.1.113883.6.90", "icd10"),
        ("http://fhir.mimic.mit.edu/CodeSystem/diagnosis-icd10", "icd10"),
        ("http://fhir.mimic.mit.edu/CodeSystem/procedure-icd10", "icd10pcs"),
        ("http://www.cms.gov/Medicare/Coding/ICD10", "icd10pcs"),
        ("http://hl7.org/fhir/sid/icd-9-cm", "icd9"),
        ("http://fhir.mimic.mit.edu/CodeSystem/diagnosis-icd9", "icd9"),
        ("http://fhir.mimic.mit.edu/CodeSystem/procedure-icd9", "icd9pcs"),
        ("http://snomed.info/sct", "snomed"),
        ("https://snomed.info/sct/", "snomed"),
        ("http://loinc.org", "loinc"),
        ("http://www.ama-assn.org/go/cpt", "cpt"),
        ("https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "hcpcs"),
        ("http://www.nlm.nih.gov/research/umls/rxnorm", "rxnorm"),
        ("urn:oid:2.16.840.1.113883.6.88", "rxnorm"),
    ],
)
def test_known_system_uris(uri, short):
    assert system_name(uri) == short


def test_unknown_and_missing_systems_are_local():
    assert system_name("http://acme.lab") == "local:http://acme.lab"
    assert system_name(None) == "local:"
    assert normalise("http://acme.lab", " BT ") == Code("local:http://acme.lab", "BT")


@pytest.mark.parametrize("code", ["I63.9", "I639", "i63.9", " I63.9 "])
def test_icd10_dotted_and_dotless_are_equal(code):
    assert normalise("http://hl7.org/fhir/sid/icd-10-cm", code) == Code("icd10", "I639")


def test_mimic_dotless_icd_kept_and_icd9_normalised():
    assert normalise("http://fhir.mimic.mit.edu/CodeSystem/diagnosis-icd10", "Z8546") == Code(
        "icd10", "Z8546"
    )
    assert normalise("http://hl7.org/fhir/sid/icd-9-cm", "434.91") == Code("icd9", "43491")


def test_non_icd_codes_are_kept_as_given():
    assert normalise("http://loinc.org", "29771-3") == Code("loinc", "29771-3")
    assert normalise("http://snomed.info/sct", "422504002") == Code("snomed", "422504002")
    assert normalise("http://www.ama-assn.org/go/cpt", "45378") == Code("cpt", "45378")


def test_parse_code_rule_syntax():
    assert parse_code("icd10:I63.9") == Code("icd10", "I639")
    assert parse_code("loinc:29771-3") == Code("loinc", "29771-3")
    assert parse_code("http://snomed.info/sct|422504002") == Code("snomed", "422504002")
    assert parse_code("setting:ED") == Code("setting", "ED")
    with pytest.raises(ValueError, match="system:code"):
        parse_code("I639")
