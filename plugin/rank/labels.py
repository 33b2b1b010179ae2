"""Labels, kept apart from features: ``labels.csv`` rows and real-time outcome labels.

Nothing here is imported by :mod:`plugin.rank.features`; the leakage tests check that
label fields and events after an encounter never reach a feature.

Join rule (documented for ``dxsafety train``): a finding takes the label row with the
same ``(patient_id, index_ref, trigger)``; failing that, any row with the same
``(patient_id, index_ref)`` (is_mod if any such row is a MOD: another trigger on the same
visit points at the same missed opportunity). **A finding without any label row is a
non-MOD** — the generator labels every planted case, so an unlabelled finding is a
background record the rules happened to flag.
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


@dataclass(frozen=True, slots=True)
class Label:
    is_mod: bool
    missed_dx: str
    scenario: str
    matched: bool  # a label row was found


def normalise_dx(text: str) -> str:
    key = text.strip().lower().replace(" ", "_").replace("-", "_").replace("/", "_")
    if not key or key in ("none", "nan", "null"):
        return ""
    key = _ALIASES.get(key, key)
    return key if key in cs.TARGET_NAMES else "other"


def read_labels(path: Path) -> dict[tuple[str, str], list[LabelRow]]:
    """``labels.csv`` by (patient_id, index_ref)."""
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or ())]
            if missing:
                raise ModelError(f"{path}: labels file lacks columns {', '.join(missing)}")
            out: dict[tuple[str, str], list[LabelRow]] = {}
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
    finding: Finding, trigger: str | None, labels: dict[tuple[str, str], list[LabelRow]]
) -> Label:
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
