"""Rule-language traps (issue 10, item 7): ``ever`` and ``mo`` durations, the lint warning
for ``codes:``/``diagnosis:`` swapped on an encounter selector, the hint to quote values that
start with ``>``, and the ``principal: true`` diagnosis selector."""

from __future__ import annotations

import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from plugin.cli import main
from plugin.errors import RuleValidationError
from plugin.rules import evaluate_rule, load_rules
from plugin.rules.codesets import CodeSet
from plugin.rules.lint import lint_warnings
from plugin.rules.schema import EVER, Selector, parse_duration, shift
from plugin.rules.selectors import compile_selector
from plugin.rules.validators import code_kind
from plugin.timeline.spec import timeline_from_spec

ROOT = Path(__file__).parents[2]
BAD = Path(__file__).parent / "bad"

VALUESETS = {
    "stroke_dx": "codes: {icd10: [I60-I63], icd9: ['430-434'], snomed: ['230690007']}",
    "colonoscopy_px": "codes: {cpt: ['45378-45392'], icd10pcs: [0DJD8ZZ]}",
    "mixed_set": "codes: {icd10: [R42], loinc: [2335-8]}",
    "gi_clinic": "codes: {snomed: ['394584008']}",
}


def write_tree(tmp_path: Path, rules: dict[str, str]) -> Path:
    vs = tmp_path / "valuesets"
    vs.mkdir()
    for name, codes in VALUESETS.items():
        (vs / f"{name}.yaml").write_text(
            f"name: {name}\nversion: '1'\ntitle: {name}\nsource: test\n{codes}\n"
        )
    for name, logic in rules.items():
        (tmp_path / f"{name}.yaml").write_text(
            textwrap.dedent(
                f"""\
                title: {name}
                id: {uuid.uuid4()}
                status: test
                level: low
                description: a test rule
                references: [test]
                falsepositives: [none]
                """
            )
            + textwrap.dedent(logic)
        )
    return tmp_path


# --- 1. durations: mo, ever ----------------------------------------------------------------
def test_months_are_30_days():
    assert parse_duration("6mo") == timedelta(days=180)
    assert parse_duration("1 mo") == timedelta(days=30)
    assert parse_duration("-2mo") == timedelta(days=-60)
    with pytest.raises(ValueError, match="6mo"):
        parse_duration("6m")  # not minutes, not months: ambiguous, refused


def test_ever_forms():
    assert parse_duration("ever") == EVER == parse_duration("+ever")
    assert parse_duration("-ever") == -EVER
    assert EVER > datetime.max - datetime.min  # reaches every representable moment


def test_shift_clamps_instead_of_overflowing():
    early = datetime(50, 1, 1, tzinfo=UTC)  # a mistyped year
    assert shift(early, -EVER) == datetime.min.replace(tzinfo=UTC)
    assert shift(early, EVER) == datetime.max.replace(tzinfo=UTC)
    assert shift(early, timedelta(days=1)) == datetime(50, 1, 2, tzinfo=UTC)


EVER_RULE = """\
logic:
  type: absence
  index: {kind: observation, codes: [loinc:2335-8], interpretation: [POS]}
  expect_any: [{kind: procedure, codes: [valueset:colonoscopy_px]}]
  within: 2mo
  exclude:
    - event: {kind: procedure, codes: [cpt:44150]}
      between: [-ever, 0d]
"""


def _fobt(colectomy_at: str, fobt_at: str = "0d") -> dict[str, object]:
    return {
        "patient": {"birth_date": "1960-01-01", "sex": "male"},
        "events": [
            {"t": colectomy_at, "kind": "procedure", "code": "cpt:44150"},
            {"t": fobt_at, "kind": "observation", "code": "loinc:2335-8",
             "interpretation": ["POS"]},
        ],
    }  # fmt: skip


def test_ever_look_back_reaches_past_a_century(tmp_path):
    (rule,) = load_rules(write_tree(tmp_path, {"ever_look_back": EVER_RULE})).rules
    as_of = datetime(2300, 1, 1, tzinfo=UTC)
    assert rule.within == timedelta(days=60)
    assert evaluate_rule(rule, timeline_from_spec(_fobt("-2d")), as_of=as_of) == []
    # beyond the old -36500d idiom: still excluded
    assert evaluate_rule(rule, timeline_from_spec(_fobt("-120y")), as_of=as_of) == []
    # after the index (outside [-ever, 0d]): not excluded, the finding stands
    assert len(evaluate_rule(rule, timeline_from_spec(_fobt("1d")), as_of=as_of)) == 1


def test_ever_from_an_anchor_near_year_one_does_not_overflow(tmp_path):
    (rule,) = load_rules(write_tree(tmp_path, {"ever_look_back": EVER_RULE})).rules
    tl = timeline_from_spec(_fobt("0003-01-01", "0005-06-01"))
    assert evaluate_rule(rule, tl, as_of=datetime(2300, 1, 1, tzinfo=UTC)) == []


@pytest.mark.parametrize("key", ["within", "died_within"])
def test_ever_only_bounds_between(tmp_path, key):
    logic = EVER_RULE.replace("within: 2mo", "within: ever" if key == "within" else "within: 2mo")
    if key == "died_within":
        logic += "    - died_within: ever\n"
    with pytest.raises(RuleValidationError) as info:
        load_rules(write_tree(tmp_path, {"ever_misplaced": logic}))
    (problem,) = info.value.problems
    assert problem.code == "R206"
    assert f"'{key}: ever'" in problem.message and "between: [-ever, 0d]" in problem.message


def test_catalogue_uses_ever_not_the_36500d_idiom():
    texts = [p.read_text() for p in (ROOT / "rules" / "core").rglob("*.yaml")]
    assert not any("36500d" in t for t in texts)
    assert sum(t.count("[-ever,") for t in texts) >= 7


# --- 2. lint: codes:/diagnosis: swapped on an encounter selector ----------------------------
def test_code_kind():
    assert code_kind({"icd10"}) == "diagnosis"
    assert code_kind({"icd10", "icd9", "snomed"}) == "diagnosis"
    assert code_kind({"cpt", "icd10pcs", "snomed"}) == "act"
    assert code_kind({"loinc"}) == "act"
    assert code_kind({"icd10", "loinc"}) is None  # mixed: no guess
    assert code_kind({"snomed"}) is None  # SNOMED names disorders and procedures alike
    assert code_kind({"setting"}) is None


SWAPPED = """\
logic:
  type: sequence
  index:
    kind: encounter
    setting: [ED]
    codes: [valueset:stroke_dx]
  outcome:
    - {kind: encounter, diagnosis: [valueset:colonoscopy_px, valueset:stroke_dx]}
    - {kind: encounter, not_diagnosis: [loinc:2335-8], not_codes: [icd10:I63]}
  within: 30d
  require:
    - event: {kind: condition, codes: [valueset:stroke_dx]}
      between: [-1y, 0d]
    - event: {kind: [encounter, procedure], codes: [valueset:colonoscopy_px]}
      between: [-1y, 0d]
    - event: {kind: encounter, codes: [valueset:gi_clinic, valueset:mixed_set]}
      between: [-1y, 0d]
"""


def test_swapped_codes_and_diagnosis_warn_with_location(tmp_path):
    root = write_tree(tmp_path, {"swapped_keys": SWAPPED})
    assert len(load_rules(root).rules) == 1  # warnings never stop a load
    warnings = lint_warnings(root)
    got = [(w.code, w.location.line, w.location.col) for w in warnings]
    assert got == [
        ("R211", 13, 13),  # index codes: [valueset:stroke_dx]
        ("R212", 15, 37),  # outcome diagnosis: [valueset:colonoscopy_px, ...]
        ("R212", 16, 41),  # not_diagnosis: [loinc:2335-8]
        ("R211", 16, 68),  # not_codes: [icd10:I63]
    ]
    assert all(w.severity == "warning" for w in warnings)
    first = str(warnings[0])
    assert first.startswith(f"{root / 'swapped_keys.yaml'}:13:13: warning[R211] codes: on an ")
    assert "value set 'stroke_dx' holds diagnosis codes" in first
    assert "did you mean diagnosis:?" in first
    assert "did you mean codes:" in str(warnings[1])
    assert "did you mean not_diagnosis:?" in str(warnings[3])


def test_cli_lint_prints_warnings_and_passes(tmp_path, capsys):
    root = write_tree(tmp_path, {"swapped_keys": SWAPPED})
    assert main(["rules", "lint", str(root)]) == 0
    out, err = capsys.readouterr()
    assert f"{root / 'swapped_keys.yaml'}:13:13: warning[R211]" in err
    assert "4 warning(s)" in out


def test_catalogue_has_no_swapped_keys():
    assert lint_warnings(ROOT / "rules") == []


# --- 3. hint to quote values that start with > or < -----------------------------------------
def test_unquoted_comparator_value_gets_a_quote_hint():
    with pytest.raises(RuleValidationError) as info:
        load_rules(BAD / "unquoted_value")
    (problem,) = info.value.problems
    assert problem.code == "R001"
    assert (Path(problem.location.path).name, problem.location.line) == (
        "unquoted_threshold_rule.yaml",
        12,
    )
    assert problem.message.endswith('quote values that start with > or <: value: "> 10 mIU/L"')


# --- 4. principal: true ---------------------------------------------------------------------
def _admission(**keys: object) -> object:
    tl = timeline_from_spec({"events": [{"t": "0d", "setting": "IP", "end": "3d", **keys}]})
    (event,) = tl.events
    return event


def _matcher(**keys: object):  # type: ignore[no-untyped-def]
    stroke = CodeSet()
    stroke.add("icd10", "I60-I63")
    return compile_selector(Selector.model_validate({"kind": "encounter", **keys}), {"s": stroke})


@pytest.mark.parametrize(
    ("event", "plain", "principal"),
    [
        ({"principal": ["icd10:I63.9"], "diagnosis": ["icd10:E11.9"]}, True, True),
        ({"principal": ["icd10:J18.9"], "diagnosis": ["icd10:I63.9"]}, True, False),
        ({"diagnosis": ["icd10:J18.9", "icd10:I63.9"]}, True, True),  # unknown: any diagnosis
        ({"diagnosis": ["icd10:J18.9"]}, False, False),
    ],
)
def test_principal_diagnosis_selector(event, plain, principal):
    ev = _admission(**event)
    assert _matcher(diagnosis=["valueset:s"])(ev) is plain
    assert _matcher(diagnosis=["valueset:s"], principal=True)(ev) is principal
    assert _matcher(not_diagnosis=["valueset:s"], principal=True)(ev) is not principal


def test_inline_principal_codes_are_diagnoses_too():
    ev = _admission(principal=["icd10:I63.9"], diagnosis=["icd10:E11.9", "icd10:I63.9"])
    assert [str(c) for c in ev.detail.principal] == ["icd10:I639"]
    assert [str(c) for c in ev.diagnoses] == ["icd10:I639", "icd10:E119"]


@pytest.mark.parametrize(
    "keys",
    [
        {"kind": "condition", "codes": ["icd10:I63"], "principal": True},
        {"kind": ["encounter", "condition"], "diagnosis": ["icd10:I63"], "principal": True},
        {"kind": "encounter", "setting": ["IP"], "principal": True},  # nothing to apply it to
        {"kind": "encounter", "diagnosis": ["icd10:I63"], "principal": False},
    ],
)
def test_principal_needs_an_encounter_diagnosis(keys):
    with pytest.raises(ValueError, match="principal"):
        Selector.model_validate(keys)


def test_a_site_rule_is_linted_against_the_catalogue_value_sets(tmp_path, capsys):
    # the site directory has no value sets of its own: `stroke` is the catalogue's
    site = tmp_path / "site"
    site.mkdir()
    (site / "local_swapped.yaml").write_text(
        f"title: Site rule\nid: {uuid.uuid4()}\nstatus: test\nlevel: low\n"
        "description: test\nreferences: [PMID 1]\nfalsepositives: [none]\n"
        "logic:\n  type: sequence\n"
        "  index: {kind: encounter, setting: [ED], codes: [valueset:stroke]}\n"
        "  outcome: {kind: encounter, setting: [IP]}\n  within: 30d\n"
    )
    assert main(["rules", "lint", "--rules", str(site)]) == 0
    out, err = capsys.readouterr()
    assert f"{site / 'local_swapped.yaml'}:10:51: warning[R211]" in err
    assert "value set 'stroke' holds diagnosis codes" in err
    assert "1 warning(s)" in out
