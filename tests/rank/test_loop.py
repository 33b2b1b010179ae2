"""Issue 13 (ranker side of the loop): reviewed labels with design weights, unreviewed never
negatives, --base, calibration, model version per score, promotion gate, constrained
missed-diagnosis head, reasons only from the catalogue."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from plugin.errors import ModelError
from plugin.rank import codesets as cs
from plugin.rank import load_model, save_model
from plugin.rank.catalogue import CATALOGUE, REMOVED, markdown, missing, monotone_vector
from plugin.rank.dataset import Collected, collect
from plugin.rank.explain import describe
from plugin.rank.features import REVIEW_FEATURES
from plugin.rank.labels import read_labels
from plugin.rank.promote import compare, merge, promote
from plugin.rank.training import TrainConfig, constrain_dx, model_card, train_heads
from plugin.timeline.model import Finding, Timeline
from tests.rank.conftest import Population

COLUMNS = ("key", "patient_id", "rule_id", "index_ref", "index_start", "episode", "label",
           "selection", "inclusion_prob", "weight", "reviewed_at", "model_version")
ROOT = Path(__file__).resolve().parents[2]
Evaluator = Callable[[Timeline], list[Finding]]


def _truth(pop: Population) -> dict[tuple[str, str], bool]:
    return {k: rows[0].is_mod for k, rows in pop.labels.items()}


def write_reviewed(path: Path, pop: Population, evaluator: Evaluator, *, share: float,
                   seed: int, flip: bool = False) -> tuple[int, int]:
    """A worklist export: a random sample (inclusion ``share``) and a few ranked cases.
    Returns (rows written, findings in total)."""
    rng = random.Random(seed)
    truth = _truth(pop)
    rows, total = [], 0
    for tl in pop.timelines:
        for f in evaluator(tl):
            total += 1
            r = rng.random()
            if r < share:
                sel, prob = "random", f"{share:.2f}"
            elif r < share + 0.05:
                sel, prob = "ranked", ""
            else:
                continue  # not reviewed: must not appear
            mod = truth[(f.patient_id, f.index_ref)] != flip
            rows.append([f.key, f.patient_id, f.rule_id, f.index_ref,
                         f.index_start.isoformat(), "1", int(mod), sel, prob,
                         f"{1 / float(prob):.4f}" if prob else "", "2026-11-30T10:00:00Z",
                         "m-old"])
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        w.writerows(rows)
    return len(rows), total


def _save(out: Path, data: Collected, **kw: object) -> Path:
    heads, metrics = train_heads(data, TrainConfig(n_estimators=80), **kw)  # type: ignore[arg-type]
    meta = {"fingerprint": "t", "rule_triggers": {}}
    save_model(out, heads, meta, metrics, model_card(meta, metrics))
    return out


@pytest.fixture(scope="module")
def synthetic_rows(train_pop: Population, evaluator: Evaluator) -> Collected:
    return collect(train_pop.timelines, evaluator, train_pop.labels)


@pytest.fixture(scope="module")
def prior(tmp_path_factory: pytest.TempPathFactory, synthetic_rows: Collected) -> Path:
    return _save(tmp_path_factory.mktemp("prior"), synthetic_rows)


def test_reviewed_labels_carry_weights_and_unreviewed_are_left_out(
    tmp_path: Path, train_pop: Population, evaluator: Evaluator
) -> None:
    path = tmp_path / "labels.csv"
    written, total = write_reviewed(path, train_pop, evaluator, share=0.25, seed=3)
    labels = read_labels(path)
    assert labels.reviewed
    rows = [r for rs in labels.values() for r in rs]
    assert {r.selection for r in rows} == {"random", "ranked"}
    assert all(r.weight == pytest.approx(4.0, rel=1e-3) for r in rows if r.selection == "random")
    assert all(r.weight == 1.0 for r in rows if r.selection == "ranked")
    data = collect(train_pop.timelines, evaluator, labels)
    assert data.reviewed
    assert len(data.review) == written  # only reviewed findings are rows
    assert data.findings_unlabelled == total - written
    key_to = {r.key: r for r in rows}
    for key, y in zip(data.review.keys, data.review.y, strict=True):
        assert bool(y) == key_to[key].is_mod  # labels joined by finding key


def test_synthetic_truth_labels_every_finding(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("patient_id,index_ref,index_time,trigger,scenario,is_mod,missed_dx\n"
                    "p1,Encounter/e,2026-01-01T00:00:00Z,SP-1,sp_missed_stroke,1,stroke\n")
    labels = read_labels(path)
    assert not labels.reviewed
    assert labels[("p1", "Encounter/e")][0].missed_dx == "stroke"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"label": "yes"}, "label must be 1"),
        ({"selection": "random", "inclusion_prob": "", "weight": ""}, "needs inclusion_prob"),
        ({"selection": "random", "inclusion_prob": "1.5", "weight": ""}, "outside"),
        ({"selection": "lottery"}, "selection"),
    ],
)
def test_bad_reviewed_rows_name_file_and_line(tmp_path: Path, row: dict[str, str],
                                              message: str) -> None:
    base = dict(zip(COLUMNS, ["k1", "p1", "r1", "Encounter/e", "2026-01-01", "1", "1",
                              "random", "0.5", "", "2026-11-30", "m"], strict=True))
    path = tmp_path / "bad.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, COLUMNS)
        w.writeheader()
        w.writerow(base)
        w.writerow(base | row)
    with pytest.raises(ModelError, match=rf"bad\.csv:3: .*{message}"):
        read_labels(path)


def test_weights_change_the_model(synthetic_rows: Collected) -> None:
    a, _ = train_heads(synthetic_rows, TrainConfig(n_estimators=40))
    rv = synthetic_rows.review
    rng = np.random.default_rng(0)
    rv_w = list(rng.choice([1.0, 10.0], size=len(rv)))
    from dataclasses import replace

    weighted = replace(synthetic_rows, review=replace(rv, weight=rv_w))
    b, _ = train_heads(weighted, TrainConfig(n_estimators=40))
    X = rv.matrix()
    assert not np.allclose(a["review"].predict_proba(X), b["review"].predict_proba(X))


def test_scores_are_calibrated_probabilities_with_model_version(
    prior: Path, test_pop: Population, evaluator: Evaluator
) -> None:
    ranker = load_model(prior)
    info = json.loads((prior / "model.json").read_text())
    assert info["calibration"]["kind"] in ("isotonic", "platt")
    assert len(info["model_version"]) == 12 and ranker.version == info["model_version"]
    assert info["model_version"] in (prior / "MODEL_CARD.md").read_text()
    findings = [f for tl in test_pop.timelines for f in evaluator(tl)]
    scored = ranker.score_findings(findings, {tl.patient.id: tl for tl in test_pop.timelines})
    assert scored and all(0.0 <= (f.score or 0.0) <= 1.0 for f in scored)
    assert {f.extra["model_version"] for f in scored} == {ranker.version}
    assert {f.extra["score_kind"] for f in scored} == {"calibrated P(MOD)"}
    # calibrated: the mean predicted probability is near the observed MOD rate
    truth = _truth(test_pop)
    y = np.array([truth[(f.patient_id, f.index_ref)] for f in scored], dtype=float)
    p = np.array([f.score for f in scored], dtype=float)
    assert abs(p.mean() - y.mean()) < 0.1


def test_missed_dx_only_from_the_rules_targets(
    prior: Path, test_pop: Population, evaluator: Evaluator
) -> None:
    classes = ["appendicitis", "hypothyroidism", "sepsis", "stroke"]
    proba = np.array([0.4, 0.1, 0.3, 0.2])
    only = constrain_dx("TR-7", classes, proba)
    assert only == [("hypothyroidism", 1.0)]
    sp3 = constrain_dx("SP-3", classes, proba)
    assert [c for c, _ in sp3] == ["appendicitis", "sepsis"]
    assert sum(p for _, p in sp3) == pytest.approx(1.0)
    ranker = load_model(prior)
    findings = [f for tl in test_pop.timelines for f in evaluator(tl)]
    scored = ranker.score_findings(findings, {tl.patient.id: tl for tl in test_pop.timelines})
    for f in scored:
        allowed = cs.TRIGGER_TARGETS[ranker._trigger(f) or ""]
        assert f.missed_dx and {d for d, _ in f.missed_dx} <= allowed


def test_reasons_only_from_the_catalogue(prior: Path, test_pop: Population,
                                         evaluator: Evaluator) -> None:
    assert missing() == []
    assert (ROOT / "plugin" / "rank" / "FEATURES.md").read_text() == markdown()
    assert not set(REMOVED) & set(REVIEW_FEATURES)  # generator structure is gone
    assert describe("days_since_thyroid_rx", 324.0) is None
    assert describe("days_to_outcome", -4.2) == "returned during the visit"
    mono = dict(zip(REVIEW_FEATURES, monotone_vector(REVIEW_FEATURES), strict=True))
    assert mono["win_declined"] == -1 and mono["n_vitals_abnormal"] == 1
    ranker = load_model(prior)
    findings = [f for tl in test_pop.timelines for f in evaluator(tl)]
    scored = ranker.score_findings(findings, {tl.patient.id: tl for tl in test_pop.timelines})
    hidden = {describe(n, 1.0) for n, e in CATALOGUE.items() if not e.reason} - {None}
    assert any(f.reasons for f in scored)
    for f in scored:
        assert not set(f.reasons) & hidden
        assert not any("thyroid prescription" in r and "d before" in r for r in f.reasons)


def test_train_on_reviewed_labels_from_the_synthetic_prior(
    tmp_path: Path, prior: Path, train_pop: Population, evaluator: Evaluator
) -> None:
    path = tmp_path / "labels.csv"
    write_reviewed(path, train_pop, evaluator, share=0.4, seed=5)
    data = collect(train_pop.timelines, evaluator, read_labels(path))
    base = load_model(prior)
    heads, metrics = train_heads(data, TrainConfig(n_estimators=80, base_rounds=30), base=base)
    # boosting continued from the prior: its trees come first
    assert heads["review"].booster_.num_trees() == base.heads["review"].booster_.num_trees() + 30
    assert metrics["rows"]["review"]["reviewed_labels"] is True


def test_promotion_gate(tmp_path: Path, prior: Path, synthetic_rows: Collected,
                        train_pop: Population, test_pop: Population,
                        evaluator: Evaluator) -> None:
    validation = merge([collect(test_pop.timelines, evaluator, test_pop.labels)])
    # a worse candidate: trained on reviewed labels that are all wrong
    bad_labels = tmp_path / "flipped.csv"
    write_reviewed(bad_labels, train_pop, evaluator, share=0.5, seed=7, flip=True)
    bad = _save(tmp_path / "bad", collect(train_pop.timelines, evaluator,
                                          read_labels(bad_labels)))
    current = tmp_path / "current"
    first = compare(prior, current, validation)
    assert first.promoted and first.current is None  # nothing served yet
    assert promote(prior, current, first)
    served = load_model(current).version
    worse = compare(bad, current, validation)
    assert not worse.promoted and "worse" in worse.reason
    assert worse.candidate.auroc < worse.current.auroc  # type: ignore[union-attr]
    assert not promote(bad, current, worse)
    assert load_model(current).version == served  # unchanged
    assert json.loads((bad / "PROMOTION.json").read_text())["promoted"] is False
    # the other way round: the good model replaces a bad current one
    bad_current = tmp_path / "bad_current"
    assert promote(bad, bad_current, compare(bad, bad_current, validation))
    better = compare(prior, bad_current, validation)
    assert better.promoted and promote(prior, bad_current, better)
    assert load_model(bad_current).version == load_model(prior).version


def test_card_gate_holds_a_head_that_does_not_beat_the_baseline(
    tmp_path: Path, synthetic_rows: Collected, prior: Path
) -> None:
    from dataclasses import replace

    from plugin.rank.training import card_gate

    ranker = load_model(prior)
    good = card_gate(ranker.heads["realtime"], synthetic_rows.realtime, "test")
    assert good["status"] == "ship" and good["auroc"] > good["baseline_auroc"]
    # a real-time head trained on shuffled outcomes carries no signal: held back
    rt = synthetic_rows.realtime
    shuffled = list(np.random.default_rng(1).permutation(np.asarray(rt.y, dtype=object)))
    noise = replace(synthetic_rows, realtime=replace(rt, y=shuffled))
    heads, metrics = train_heads(noise, TrainConfig(n_estimators=40))
    gate = card_gate(heads["realtime"], rt, "test")
    assert gate["status"] == "hold"
    out = tmp_path / "held"
    meta = {"fingerprint": "t", "rule_triggers": {}}
    save_model(out, heads, meta, metrics | {"cards": {"realtime": gate}},
               model_card(meta, metrics))
    held = load_model(out)
    assert not held.ships_in_cards("realtime")  # CDS falls back to the rules
    assert ranker.ships_in_cards("realtime")
