"""Labels, kept apart from features: ``labels.csv`` rows and real-time outcome labels.

Nothing here is imported by :mod:`plugin.rank.features`; the leakage tests check that
label fields and events after an encounter never reach a feature.

Two label files are read:

* **Synthetic ground truth** (``dxsafety synth``: ``patient_id, index_ref, index_time,
  trigger, scenario, is_mod, missed_dx``). A finding takes the row with the same
  ``(patient_id, index_ref, trigger)``; failing that, any row with the same
  ``(patient_id, index_ref)`` (is_mod if any such row is a MOD). **A finding without a row
  is a non-MOD**: the generator labels every planted case, so an unlabelled finding is a
  background record the rules happened to flag.
* **Reviewed labels** (the worklist export: ``key, patient_id, rule_id, index_ref,
  index_start, episode, label, selection, inclusion_prob, weight, reviewed_at,
  model_version``). Only reviewed cases are in the file. A finding takes the row with its
  ``key``, else the row with the same ``(patient_id, rule_id, index_ref)``. **A finding
  without a row is unlabelled and is left out of training — never a negative.** Each row
  carries its design weight: ``weight`` (or ``1 / inclusion_prob``) for random and
  stratified samples; ranked-triage and CDS-feedback rows have no inclusion probability
  and weigh 1 (their selection depends only on the features, so P(MOD | features) stays
  unbiased; the sampled rows restore the case mix). Weights are normalised to mean 1 at
  training time.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from plugin.errors import ModelError
from plugin.rank import codesets as cs
from plugin.timeline.model import Event, Finding, Kind, Timeline

REQUIRED = ("patient_id", "index_ref", "is_mod", "missed_dx")
REVIEWED_REQUIRED = ("patient_id", "index_ref", "label")
SELECTIONS = ("ranked", "random", "stratified", "cds")
_ALIASES = {
    "crc": "colorectal_cancer",
    "colon_cancer": "colorectal_cancer",
    "ami": "mi",
    "myocardial_infarction": "mi",
    "nstemi": "mi",
    "pulmonary_embolism": "pe",
    "tia": "stroke",
    "sea": "spinal_epidural_abscess",
    "epidural_abscess": "spinal_epidural_abscess",
    "dissection": "aortic_dissection",
}
REALTIME_HORIZON = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class LabelRow:
    patient_id: str
    index_ref: str
    trigger: str
    scenario: str
    is_mod: bool
    missed_dx: str  # a target name, "other", or "" when not a MOD
    key: str = ""  # finding key (reviewed labels)
    rule_id: str = ""
    selection: str = ""  # ranked | random | stratified | cds (reviewed labels)
    weight: float = 1.0  # design weight (1 / inclusion probability; 1 for ranked)
    reviewed_at: str = ""


class LabelSet(dict[tuple[str, str], list[LabelRow]]):
    """Label rows by ``(patient_id, index_ref)``; ``reviewed`` says which file kind it is
    (reviewed labels: unmatched findings are unlabelled, not negatives)."""

    reviewed: bool = False
    source: str = ""

    def by_key(self) -> dict[str, LabelRow]:
        return {r.key: r for rows in self.values() for r in rows if r.key}


@dataclass(frozen=True, slots=True)
class Label:
    is_mod: bool
    missed_dx: str
    scenario: str
    matched: bool  # a label row was found
    weight: float = 1.0
    selection: str = ""


def normalise_dx(text: str) -> str:
    key = text.strip().lower().replace(" ", "_").replace("-", "_").replace("/", "_")
    if not key or key in ("none", "nan", "null"):
        return ""
    key = _ALIASES.get(key, key)
    return key if key in cs.TARGET_NAMES else "other"


def _reviewed_row(path: Path, line: int, rec: dict[str, str]) -> LabelRow:
    where = f"{path}:{line}"
    label = (rec.get("label") or "").strip()
    if label not in ("0", "1"):
        raise ModelError(f"{where}: label must be 1 (missed opportunity) or 0, got {label!r}")
    selection = (rec.get("selection") or "ranked").strip().lower()
    if selection not in SELECTIONS:
        raise ModelError(f"{where}: selection {selection!r} is not one of {SELECTIONS}")
    weight = 1.0
    text_w, text_p = (rec.get("weight") or "").strip(), (rec.get("inclusion_prob") or "").strip()
    try:
        if text_w:
            weight = float(text_w)
        elif text_p:
            prob = float(text_p)
            if not 0 < prob <= 1:
                raise ModelError(f"{where}: inclusion_prob {prob} outside (0, 1]")
            weight = 1 / prob
    except ValueError:
        raise ModelError(f"{where}: weight/inclusion_prob not a number") from None
    if not weight > 0 or weight != weight or weight == float("inf"):
        raise ModelError(f"{where}: weight {weight} must be a positive number")
    if selection in ("random", "stratified") and not (text_w or text_p):
        raise ModelError(f"{where}: a {selection} sample row needs inclusion_prob or weight")
    return LabelRow(
        patient_id=rec["patient_id"],
        index_ref=rec["index_ref"],
        trigger="",
        scenario=f"reviewed:{selection}",
        is_mod=label == "1",
        missed_dx=normalise_dx(rec.get("missed_dx") or "") if label == "1" else "",
        key=(rec.get("key") or "").strip(),
        rule_id=(rec.get("rule_id") or "").strip(),
        selection=selection,
        weight=weight,
        reviewed_at=(rec.get("reviewed_at") or "").strip(),
    )


def read_labels(path: Path) -> LabelSet:
    """``labels.csv`` (synthetic truth) or a reviewed-labels export, by (patient_id,
    index_ref). Errors name ``file:line``."""
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or ()
            out = LabelSet()
            out.source = str(path)
            if "label" in fields and "is_mod" not in fields:
                missing = [c for c in REVIEWED_REQUIRED if c not in fields]
                if missing:
                    raise ModelError(f"{path}: labels file lacks columns {', '.join(missing)}")
                out.reviewed = True
                for line, rec in enumerate(reader, start=2):
                    row = _reviewed_row(path, line, rec)
                    out.setdefault((row.patient_id, row.index_ref), []).append(row)
                return out
            missing = [c for c in REQUIRED if c not in fields]
            if missing:
                raise ModelError(f"{path}: labels file lacks columns {', '.join(missing)}")
            for rec in reader:
                row = LabelRow(
                    patient_id=rec["patient_id"],
                    index_ref=rec["index_ref"],
                    trigger=(rec.get("trigger") or "").upper(),
                    scenario=rec.get("scenario") or "",
                    is_mod=(rec["is_mod"] or "").strip().lower() in ("1", "true", "yes"),
                    missed_dx=normalise_dx(rec.get("missed_dx") or ""),
                )
                out.setdefault((row.patient_id, row.index_ref), []).append(row)
            return out
    except OSError as exc:
        raise ModelError(f"{path}: cannot read labels ({exc})") from None


def label_for(
    finding: Finding,
    trigger: str | None,
    labels: dict[tuple[str, str], list[LabelRow]],
    keys: dict[str, LabelRow] | None = None,
) -> Label:
    """The finding's label. ``keys`` (:meth:`LabelSet.by_key`) for reviewed labels."""
    if getattr(labels, "reviewed", False):
        row = (keys or {}).get(finding.key)
        if row is None:
            rows = labels.get((finding.patient_id, finding.index_ref), [])
            row = next((r for r in rows if r.rule_id == finding.rule_id), None)
            if row is None and rows and not any(r.rule_id for r in rows):
                row = max(rows, key=lambda r: r.is_mod)
        if row is None:
            return Label(is_mod=False, missed_dx="", scenario="", matched=False)
        return Label(is_mod=row.is_mod, missed_dx=row.missed_dx, scenario=row.scenario,
                     matched=True, weight=row.weight, selection=row.selection)
    rows = labels.get((finding.patient_id, finding.index_ref), [])
    if not rows:
        return Label(is_mod=False, missed_dx="", scenario="", matched=False)
    same = [r for r in rows if trigger and r.trigger == trigger.upper()]
    pick = same[0] if same else max(rows, key=lambda r: r.is_mod)
    return Label(
        is_mod=pick.is_mod,
        missed_dx=pick.missed_dx if pick.is_mod else "",
        scenario=pick.scenario,
        matched=True,
    )


def realtime_candidates(tl: Timeline) -> list[Event]:
    """ED and primary-care encounters: where the real-time model is asked."""
    return [
        e
        for e in tl.events
        if e.kind is Kind.ENCOUNTER
        and e.detail is not None
        and e.detail.setting.value in ("ED", "AMB")
    ]


CHRONIC_TARGETS = cs.CANCERS | {"hypothyroidism"}


def diagnosis_times(tl: Timeline) -> dict[str, list[datetime]]:
    """When each target diagnosis was recorded (conditions and encounter diagnoses)."""
    times: dict[str, list[datetime]] = {}
    for e in tl.events:
        if e.kind not in (Kind.CONDITION, Kind.ENCOUNTER):
            continue
        codes = e.codes + e.diagnoses
        for g in cs.TARGETS:
            if g.any_of(codes):
                times.setdefault(g.name, []).append(e.t)
    return times


def realtime_label(tl: Timeline, enc: Event, times: dict[str, list[datetime]] | None = None) -> str:
    """The first dangerous diagnosis newly recorded within 30 d **after** the encounter
    ended, or "none". Not new: a cancer or hypothyroidism recorded any time before, or an
    acute diagnosis recorded in the 30 d up to the end (the same episode, already known).
    Reads the future: a label, never a feature. ``times`` is :func:`diagnosis_times`."""
    end = enc.stop
    best: tuple[datetime, str] | None = None
    for name, ts in (times if times is not None else diagnosis_times(tl)).items():
        since = (
            datetime.min.replace(tzinfo=end.tzinfo)
            if name in CHRONIC_TARGETS
            else (end - REALTIME_HORIZON)
        )
        if any(since <= t <= end for t in ts):
            continue
        nxt = next((t for t in ts if end < t <= end + REALTIME_HORIZON), None)
        if nxt is not None and (best is None or nxt < best[0]):
            best = (nxt, name)
    return best[1] if best else "none"
