"""Several rule roots (the catalogue, then a site's rules), override by rule id, the
``trigger:`` key, and the versions every finding records."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from plugin.errors import RuleValidationError
from plugin.rules import evaluate, load_rules
from plugin.timeline.model import Setting

from .helpers import T0, enc, timeline

D = timedelta(days=1)
CATALOGUE = Path(__file__).resolve().parents[2] / "rules"
RID = "0f6e2a8e-9a55-4d2b-8a8e-5f2c1c7d0a11"
SP1 = "b7b5b240-7f83-4ec7-bf18-8620a4a23229"  # the catalogue's SP-1


def rule_text(rid: str = RID, *, title: str = "Site rule", within: str = "30d",
              diagnosis: str = "icd10:R42", extra: str = "") -> str:  # fmt: skip
    return (
        f"title: {title}\nid: {rid}\n{extra}status: stable\nlevel: high\ndescription: test\n"
        "references: [PMID 1]\nfalsepositives: [none]\n"
        "logic:\n  type: sequence\n"
        f"  index: {{kind: encounter, setting: [ED], diagnosis: [{diagnosis}]}}\n"
        f"  outcome: {{kind: encounter, setting: [IP]}}\n  within: {within}\n"
    )


def site(tmp: Path, files: dict[str, str], valuesets: dict[str, str] | None = None) -> Path:
    root = tmp / "site"
    (root / "valuesets").mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    for name, text in (valuesets or {}).items():
        (root / "valuesets" / f"{name}.yaml").write_text(text)
    return root


def test_a_site_root_extends_and_overrides_the_catalogue(tmp_path):
    catalogue = load_rules(CATALOGUE)
    override = rule_text(SP1, title="SP-1 at our site", within="14d", extra="trigger: SP-1\n")
    root = site(tmp_path, {"local_override_sp1.yaml": override,
                           "local_new_rule_file.yaml": rule_text()})  # fmt: skip
    both = load_rules([CATALOGUE, root])
    assert len(both) == len(catalogue) + 1
    sp1 = both.get(SP1)
    assert sp1 is not None and sp1.title == "SP-1 at our site"
    assert sp1.within == timedelta(days=14) and sp1.origin == str(root)
    assert [r.id for r in both.find("SP-1")] == [SP1]
    assert both.get(RID).origin == str(root)  # type: ignore[union-attr]
    others = [r for r in both.rules if r.id not in (SP1, RID)]
    assert {r.origin for r in others} == {str(CATALOGUE)}
    assert both.roots == (str(CATALOGUE), str(root))


def test_site_rules_use_catalogue_value_sets_and_may_override_them(tmp_path):
    uses = rule_text(diagnosis="valueset:stroke")
    root = site(tmp_path, {"local_new_rule_file.yaml": uses})
    with pytest.raises(RuleValidationError):
        load_rules(root)  # alone it has no value set 'stroke'
    both = load_rules([CATALOGUE, root])
    rule = both.get(RID)
    assert rule is not None
    stroke = enc(1, timedelta(0), Setting.ED, dx=("I639",))
    ip = enc(2, 3 * D, Setting.IP)
    assert evaluate([rule], timeline(stroke, ip), as_of=T0 + 100 * D)
    narrow = (
        "name: stroke\nversion: '1'\ntitle: Stroke (site)\nsource: test\ncodes:\n  icd10: [I61]\n"
    )
    root = site(tmp_path, {"local_new_rule_file.yaml": uses}, {"stroke": narrow})
    both = load_rules([CATALOGUE, root])
    assert both.valueset_specs["stroke"].title == "Stroke (site)"
    rule = both.get(RID)
    assert rule is not None
    assert not evaluate([rule], timeline(stroke, ip), as_of=T0 + 100 * D)
    # the catalogue's rules now use the site's value set too
    dizzy = enc(1, timedelta(0), Setting.ED, dx=("R42",), released=True)
    admitted = enc(2, 3 * D, Setting.IP, dx=("I639",))
    sp1_alone, sp1_site = load_rules(CATALOGUE).get(SP1), both.get(SP1)
    assert sp1_alone is not None and sp1_site is not None
    assert evaluate([sp1_alone], timeline(dizzy, admitted), as_of=T0 + 100 * D)
    assert not evaluate([sp1_site], timeline(dizzy, admitted), as_of=T0 + 100 * D)


def test_duplicate_ids_within_one_root_are_still_an_error(tmp_path):
    root = site(tmp_path, {"local_rule_one_file.yaml": rule_text(),
                           "local_rule_two_file.yaml": rule_text()})  # fmt: skip
    with pytest.raises(RuleValidationError) as err:
        load_rules([CATALOGUE, root])
    assert [p.code for p in err.value.problems] == ["R105"]


def test_a_missing_root_is_reported(tmp_path):
    with pytest.raises(RuleValidationError) as err:
        load_rules([CATALOGUE, tmp_path / "nowhere"])
    assert [p.code for p in err.value.problems] == ["R000"]


def test_rule_version_is_the_date_plus_a_hash_of_the_file(tmp_path):
    dated = rule_text(extra='date: "2025-01-02"\n')
    modified = rule_text(extra='date: "2025-01-02"\nmodified: "2025-03-01"\n')
    for text, when in ((dated, "2025-01-02"), (modified, "2025-03-01"), (rule_text(), None)):
        root = site(tmp_path, {"local_new_rule_file.yaml": text})
        (rule,) = load_rules(root).rules
        assert re.fullmatch((f"{when}\\+" if when else "") + "[0-9a-f]{8}", rule.version)
    (a,) = load_rules(site(tmp_path, {"local_new_rule_file.yaml": dated})).rules
    (b,) = load_rules(site(tmp_path, {"local_new_rule_file.yaml": dated + "# edit\n"})).rules
    assert a.version != b.version and a.version.split("+")[0] == b.version.split("+")[0]


def test_catalogue_version_is_stable_across_copies_and_changes_with_any_file(tmp_path):
    first = load_rules(CATALOGUE)
    assert re.fullmatch(r"[0-9a-f]{12}", first.catalogue_version)
    copy = tmp_path / "elsewhere" / "rules"
    shutil.copytree(CATALOGUE, copy)
    assert load_rules(copy).catalogue_version == first.catalogue_version
    assert load_rules(CATALOGUE).catalogue_version == first.catalogue_version
    vs = copy / "valuesets" / "stroke.yaml"
    vs.write_text(vs.read_text() + "# a comment changes the digest\n")
    assert load_rules(copy).catalogue_version != first.catalogue_version
    assert {r.catalogue_version for r in first.rules} == {first.catalogue_version}


def test_findings_record_the_rule_and_catalogue_versions(tmp_path):
    root = site(tmp_path, {"local_new_rule_file.yaml": rule_text(extra="trigger: XX-9\n")})
    ruleset = load_rules([CATALOGUE, root])
    rule = ruleset.get(RID)
    assert rule is not None
    tl = timeline(enc(1, timedelta(0), Setting.ED, dx=("R42",)), enc(2, 3 * D, Setting.IP))
    (f,) = evaluate([rule], tl, as_of=T0 + 100 * D)
    assert f.extra["rule_version"] == rule.version
    assert f.extra["catalogue_version"] == ruleset.catalogue_version
    assert f.extra["trigger"] == "XX-9"


def test_trigger_is_a_key_and_a_leftover_tag_points_to_it(tmp_path):
    root = site(tmp_path, {"local_new_rule_file.yaml": rule_text(extra="trigger: SP-1\n")})
    (rule,) = load_rules(root).rules
    assert rule.trigger == "SP-1"
    tagged = rule_text(extra="tags: [trigger.sp-1, setting.ed]\n")
    root = site(tmp_path, {"local_new_rule_file.yaml": tagged})
    with pytest.raises(RuleValidationError) as err:
        load_rules(root)
    (problem,) = err.value.problems
    assert problem.code == "R107" and problem.location.line == 3
    assert "trigger: SP-1" in problem.message
    for bad in ("sp-1", "SP1", "S-1"):
        root = site(tmp_path, {"local_new_rule_file.yaml": rule_text(extra=f"trigger: {bad}\n")})
        with pytest.raises(RuleValidationError) as err:
            load_rules(root)
        assert [p.code for p in err.value.problems] == ["R103"], bad
