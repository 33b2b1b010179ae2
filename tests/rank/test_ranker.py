"""Model directory, loading, scoring findings, explanations and real-time risk."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from plugin.errors import ModelError
from plugin.rank import FEATURE_VERSION, Risk, load_model, save_model
from plugin.rank import codesets as cs
from plugin.rank.dataset import collect
from plugin.rank.explain import describe
from plugin.rank.features import REVIEW_FEATURES, finding_features
from plugin.rank.training import TrainConfig, model_card, train_heads
from plugin.timeline.spec import timeline_from_spec
from tests.rank.conftest import dizziness_spec


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, train_pop, evaluator) -> Path:  # type: ignore[no-untyped-def]
    data = collect(train_pop.timelines, evaluator, train_pop.labels)
    heads, metrics = train_heads(data, TrainConfig(n_estimators=100))
    out = tmp_path_factory.mktemp("model")
    meta = {"fingerprint": "test", "rule_triggers": {}}
    save_model(out, heads, meta, metrics, model_card(meta, metrics))
    return out


def test_model_directory_contents(model_dir: Path) -> None:
    info = json.loads((model_dir / "model.json").read_text())
    assert info["feature_version"] == FEATURE_VERSION
    assert info["heads"]["review"]["features"] == list(REVIEW_FEATURES)
    assert {"review", "missed_dx", "realtime"} <= set(info["heads"])
    for name in ("review.txt", "missed_dx.txt", "realtime.txt", "metrics.json", "MODEL_CARD.md"):
        assert (model_dir / name).is_file()
    card = (model_dir / "MODEL_CARD.md").read_text()
    assert "Not validated on real adjudicated cases" in card
    assert "auroc" in card


def test_feature_version_mismatch_is_refused(model_dir: Path, tmp_path: Path) -> None:
    for f in model_dir.iterdir():
        (tmp_path / f.name).write_bytes(f.read_bytes())
    info = json.loads((tmp_path / "model.json").read_text())
    info["feature_version"] = "1999-01-01.0"
    (tmp_path / "model.json").write_text(json.dumps(info))
    with pytest.raises(ModelError, match=r"feature version '1999-01-01.0'.*retrain"):
        load_model(tmp_path)
    with pytest.raises(ModelError, match="not a model directory"):
        load_model(tmp_path / "nowhere")


def test_loaded_model_predicts_like_the_trained_one(model_dir, test_pop, evaluator) -> None:  # type: ignore[no-untyped-def]
    ranker = load_model(model_dir)
    data = collect(test_pop.timelines[:50], evaluator, test_pop.labels, realtime=False)
    X = data.review.matrix()
    again = load_model(model_dir)
    assert np.array_equal(
        ranker.heads["review"].predict_proba(X), again.heads["review"].predict_proba(X)
    )


def test_score_findings_fills_score_dx_and_reasons(model_dir, test_pop, evaluator) -> None:  # type: ignore[no-untyped-def]
    ranker = load_model(model_dir)
    tls = {tl.patient.id: tl for tl in test_pop.timelines[:120]}
    findings = [f for tl in tls.values() for f in evaluator(tl)]
    scored = ranker.score_findings(findings, tls, explain_top=10)
    assert len(scored) == len(findings)
    scores = [f.score for f in scored]
    assert all(s is not None and 0 <= s <= 1 for s in scores)
    assert scores == sorted(scores, reverse=True)  # best first
    # suggestions only among the rule's targets (SP-1: stroke; SP-3: appendicitis, sepsis)
    assert all(
        len(f.missed_dx) == min(3, len(cs.TRIGGER_TARGETS[ranker._trigger(f) or ""]))
        for f in scored
    )
    assert {f.missed_dx[0][0] for f in scored} <= {"stroke", "sepsis", "appendicitis"}
    explained = [f for f in scored if f.reasons]
    assert 0 < len(explained) <= 10  # only the rows shown
    assert all(not f.reasons for f in scored[10:])
    # every reason is the words of a real feature value of that finding
    for f in explained:
        row = finding_features(tls[f.patient_id], f)
        vocabulary = {describe(n, row[n]) for n in REVIEW_FEATURES}
        assert set(f.reasons) <= vocabulary, f.reasons


def test_explanation_words() -> None:
    assert describe("rf_af", 1.0) == "atrial fibrillation"
    assert describe("head_imaging", 0.0) == "no head CT/MRI"
    assert describe("age", 74.0) == "age 74"
    assert describe("sym_dizziness", 1.0) == "dizziness"


def test_realtime_risk_uses_only_the_past(model_dir) -> None:  # type: ignore[no-untyped-def]
    ranker = load_model(model_dir)
    spec, _ = dizziness_spec("rt", random.Random(11))
    tl = timeline_from_spec(spec)
    risks = ranker.realtime_risk(tl, "Encounter/ed")
    assert risks and all(isinstance(r, Risk) for r in risks)
    probs = [r.probability for r in risks]
    assert probs == sorted(probs, reverse=True) and all(0 <= p <= 1 for p in probs)
    assert risks[0].diagnosis == "stroke" and risks[0].reasons
    assert "none" not in {r.diagnosis for r in risks}
    # drop everything after the visit: same answer
    ed_end = next(e for e in tl.events if e.source == "Encounter/ed").stop
    assert ranker.realtime_risk(tl.until(ed_end), "Encounter/ed") == risks
    with pytest.raises(ModelError, match="not an encounter"):
        ranker.realtime_risk(tl, "Encounter/missing")
