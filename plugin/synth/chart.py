"""One synthetic patient's chart: FHIR R4 resources as plain dicts, plus the labeller's facts.

Every resource of a kind is built by the one method here, for background care and planted
scenarios alike, so no field's presence can tell a planted case from the rest. Internally
times are naive UTC ``datetime`` s; they are written with the patient's site offset
(``-05:00``, ``+01:00``, ``Z``, ...). Ids are UUIDs drawn from the chunk's seeded RNG.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from plugin.synth import codes as C
from plugin.synth.codes import Dx

Resource = dict[str, Any]

# (offset minutes, suffix, weight): most sites on US Eastern, some in Europe, some in UTC
ZONES = [(-300, "-05:00", 55), (-360, "-06:00", 15), (60, "+01:00", 15), (0, "Z", 15)]


@dataclass(slots=True)
class EncFact:
    ref: str
    setting: str  # AMB | ED | IP
    service: str  # pc | gi | ed | ip
    start: datetime
    end: datetime
    dx: tuple[str, ...]  # ICD-10 without dot, upper case
    disposition: str
    planned: bool


@dataclass(slots=True)
class Fact:
    """A dated coded fact (observation, procedure, medication, order)."""

    ref: str
    code: str
    t: datetime
    value: float | None = None
    positive: bool = False
    status: str = "final"


@dataclass(slots=True)
class Chart:
    rng: random.Random
    pid: str
    birth: date
    sex: str
    offset: timedelta
    suffix: str
    dotted: bool
    resources: list[tuple[str, str, Resource]] = field(default_factory=list)
    encounters: list[EncFact] = field(default_factory=list)
    obs: list[Fact] = field(default_factory=list)
    procs: list[Fact] = field(default_factory=list)
    meds: list[Fact] = field(default_factory=list)
    problems: dict[str, datetime] = field(default_factory=dict)
    last: dict[str, datetime] = field(default_factory=dict)  # last TSH, FIT, ... (scheduling)
    conds: list[tuple[datetime, tuple[str, ...]]] = field(default_factory=list)  # (t, codes)
    fahrenheit: bool = False  # this site records body temperature in [degF]
    deceased: datetime | None = None

    # --- helpers ------------------------------------------------------------------------
    def uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def ts(self, t: datetime) -> str:
        return (t + self.offset).isoformat(timespec="seconds") + self.suffix

    def age_at(self, t: datetime) -> int:
        d = t.date()
        return d.year - self.birth.year - ((d.month, d.day) < (self.birth.month, self.birth.day))

    def _add(self, rtype: str, res: Resource) -> str:
        self.resources.append((rtype, res["id"], res))
        return f"{rtype}/{res['id']}"

    def _subject(self) -> dict[str, str]:
        return {"reference": f"Patient/{self.pid}"}

    def coding(self, dx: Dx, *, problem: bool = False) -> dict[str, Any]:
        """ICD-10 (with or without its dot) and/or SNOMED CT; problem-list entries are
        sometimes SNOMED-only."""
        out: list[dict[str, str]] = []
        r = self.rng.random()
        snomed_only = problem and r < 0.15
        if dx.icd10 and not snomed_only:
            code = dx.icd10 if self.dotted else dx.icd10.replace(".", "")
            out.append({"system": C.ICD10, "code": code, "display": dx.display})
        if dx.snomed and (not out or r > 0.45):
            out.append({"system": C.SNOMED, "code": dx.snomed, "display": dx.display})
        return {"coding": out}

    # --- resources ----------------------------------------------------------------------
    def patient(self) -> None:
        res: Resource = {
            "resourceType": "Patient",
            "id": self.pid,
            "gender": self.sex,
            "birthDate": self.birth.isoformat(),
        }
        if self.deceased is not None:
            res["deceasedDateTime"] = self.ts(self.deceased)
        self._add("Patient", res)

    def encounter(
        self,
        setting: str,
        start: datetime,
        end: datetime,
        dxs: list[Dx],
        *,
        service: str = "",
        disposition: str = "home",
        admit_source: str | None = None,
        planned: bool = False,
    ) -> str:
        eid = self.uid()
        ref = f"Encounter/{eid}"
        klass, etype = _ENC_CLASS[setting]
        if setting == "IP":
            etype = _ELECTIVE if planned else _EMERGENCY_ADMIT
        elif service == "gi":
            etype = _GI_VISIT
        res: Resource = {
            "resourceType": "Encounter",
            "id": eid,
            "status": "finished",
            "class": klass,
            "type": [{"coding": [etype]}],
        }
        if service == "gi":
            res["serviceType"] = {"coding": [_GASTRO]}
        if setting != "AMB":
            priority = "EM" if not planned else "EL"
            res["priority"] = {"coding": [{"system": C.V3_PRIORITY, "code": priority}]}
        res["subject"] = self._subject()
        res["period"] = {"start": self.ts(start), "end": self.ts(end)}
        diag = []
        for rank, dx in enumerate(dxs, 1):
            cref = self.condition(dx, start, end, encounter=ref)
            use = "AD" if rank == 1 and setting == "IP" else "DD"
            diag.append(
                {
                    "condition": {"reference": cref},
                    "use": {"coding": [{"system": C.DX_ROLE, "code": use}]},
                    "rank": rank,
                }
            )
        res["diagnosis"] = diag
        if setting in ("ED", "IP"):
            disp = _ADMITTED if disposition == "admitted" else {
                "system": C.DISCHARGE, "code": disposition}
            hosp: dict[str, Any] = {"dischargeDisposition": {"coding": [disp]}}
            if admit_source is not None:
                hosp["admitSource"] = {"coding": [{"system": C.ADMIT_SOURCE, "code": admit_source}]}
            res["hospitalization"] = hosp
        self._add("Encounter", res)
        icd = tuple(
            dx.icd10.replace(".", "").upper() for dx in dxs if dx.icd10 is not None
        )
        self.encounters.append(
            EncFact(ref, setting, service or setting.lower(), start, end, icd, disposition, planned)
        )
        return ref

    def condition(
        self, dx: Dx, onset: datetime, recorded: datetime, *, encounter: str | None = None
    ) -> str:
        problem = encounter is None
        res: Resource = {
            "resourceType": "Condition",
            "id": self.uid(),
            "clinicalStatus": {"coding": [{"system": C.COND_CLINICAL, "code": "active"}]},
            "verificationStatus": {"coding": [{"system": C.COND_VERIFY, "code": "confirmed"}]},
            "category": [
                {
                    "coding": [
                        {
                            "system": C.COND_CATEGORY,
                            "code": "problem-list-item" if problem else "encounter-diagnosis",
                        }
                    ]
                }
            ],
            "code": self.coding(dx, problem=problem),
            "subject": self._subject(),
        }
        if encounter is not None:
            res["encounter"] = {"reference": encounter}
        r = self.rng.random()
        at = recorded
        if problem or r < 0.25:
            day = (onset + self.offset).date()
            res["onsetDateTime"] = day.isoformat()
            at = datetime(day.year, day.month, day.day)
        elif r < 0.85:
            res["onsetDateTime"] = self.ts(onset)
            at = onset
        res["recordedDate"] = self.ts(recorded)
        self.conds.append((at, _short_codes(res["code"]["coding"])))
        return self._add("Condition", res)

    def problem(self, name: str, onset: datetime) -> None:
        """A chronic condition on the problem list (onset is often before the record starts)."""
        self.problems[name] = onset
        self.condition(C.CHRONIC[name], onset, max(onset, _RECORD_START))

    def _obs(self, code: tuple[str, str], t: datetime, enc: str | None, cat: str) -> Resource:
        res: Resource = {
            "resourceType": "Observation",
            "id": self.uid(),
            "status": "final",
            "category": [{"coding": [{"system": C.OBS_CATEGORY, "code": cat}]}],
            "code": {"coding": [{"system": C.LOINC, "code": code[0], "display": code[1]}]},
            "subject": self._subject(),
            "effectiveDateTime": self.ts(t),
        }
        if enc is not None:
            res["encounter"] = {"reference": enc}
        return res

    def vitals(self, enc: str, t: datetime, **values: float | None) -> None:
        for name, value in values.items():
            if value is None:
                continue
            if name == "bp":
                continue
            loinc, display, unit = C.VITALS[name]
            res = self._obs((loinc, display), t, enc, "vital-signs")
            if name == "temp" and self.fahrenheit:
                res["valueQuantity"] = _qty(round(value * 9 / 5 + 32, 1), "[degF]")
            else:
                res["valueQuantity"] = _qty(value, unit)
            self._add("Observation", res)
            self.obs.append(Fact(f"Observation/{res['id']}", loinc, t, value))

    def blood_pressure(self, enc: str, t: datetime, sbp: float, dbp: float) -> None:
        loinc, display, _ = C.VITALS["bp"]
        res = self._obs((loinc, display), t, enc, "vital-signs")
        res["component"] = [
            {
                "code": {"coding": [{"system": C.LOINC, "code": C.VITALS[k][0],
                                     "display": C.VITALS[k][1]}]},
                "valueQuantity": _qty(v, "mm[Hg]"),
            }
            for k, v in (("sbp", sbp), ("dbp", dbp))
        ]
        self._add("Observation", res)

    def lab(self, enc: str | None, t: datetime, name: str, value: float) -> str:
        lab = C.LABS[name]
        value = round(value, lab.decimals) if lab.decimals else float(round(value))
        res = self._obs((lab.loinc, lab.display), t, enc, "laboratory")
        res["issued"] = _utc(t + timedelta(minutes=40 + self.rng.randrange(300)))
        res["valueQuantity"] = _qty(value, lab.unit)
        interp = "H" if value > lab.high else "L" if value < lab.low else "N"
        res["interpretation"] = [{"coding": [{"system": C.V3_INTERP, "code": interp}]}]
        rng: dict[str, Any] = {"high": _qty(lab.high, lab.unit)}
        if lab.low > 0:
            rng["low"] = _qty(lab.low, lab.unit)
        res["referenceRange"] = [rng]
        ref = self._add("Observation", res)
        self.obs.append(Fact(ref, lab.loinc, t, value))
        return ref

    def fit(self, enc: str | None, t: datetime, positive: bool) -> str:
        res = self._obs(C.FIT, t, enc, "laboratory")
        res["issued"] = _utc(t + timedelta(hours=20 + self.rng.randrange(60)))
        code, display = C.FIT_POS if positive else C.FIT_NEG
        res["valueCodeableConcept"] = {"coding": [{"system": C.SNOMED, "code": code,
                                                   "display": display}]}
        interp = "POS" if positive else "NEG"
        res["interpretation"] = [{"coding": [{"system": C.V3_INTERP, "code": interp}]}]
        ref = self._add("Observation", res)
        self.obs.append(Fact(ref, C.FIT[0], t, None, positive))
        return ref

    def procedure(self, enc: str | None, t: datetime, name: str, *, minutes: int = 30) -> str:
        cpt, display = C.PROC[name]
        return self._procedure(enc, t, cpt, display, minutes)

    def _procedure(self, enc: str | None, t: datetime, cpt: str, display: str, m: int) -> str:
        res: Resource = {
            "resourceType": "Procedure",
            "id": self.uid(),
            "status": "completed",
            "code": {"coding": [{"system": C.CPT, "code": cpt, "display": display}]},
            "subject": self._subject(),
            "performedPeriod": {"start": self.ts(t), "end": self.ts(t + timedelta(minutes=m))},
        }
        if enc is not None:
            res["encounter"] = {"reference": enc}
        ref = self._add("Procedure", res)
        self.procs.append(Fact(ref, cpt, t))
        return ref

    def imaging(self, enc: str, t: datetime, kind: str, finding: tuple[str, str] | None) -> str:
        """An imaging study: the Procedure (CPT) and its DiagnosticReport (LOINC)."""
        img = C.IMAGING[kind]
        self._procedure(enc, t, img.cpt, img.display, 20)
        concl = finding or C.NORMAL
        res: Resource = {
            "resourceType": "DiagnosticReport",
            "id": self.uid(),
            "status": "final",
            "category": [{"coding": [{"system": C.V2_0074, "code": "RAD"}]}],
            "code": {"coding": [{"system": C.LOINC, "code": img.loinc, "display": img.display}]},
            "subject": self._subject(),
            "encounter": {"reference": enc},
            "effectiveDateTime": self.ts(t),
            "issued": _utc(t + timedelta(minutes=30 + self.rng.randrange(240))),
            "conclusion": "No acute abnormality." if finding is None else concl[1] + ".",
            "conclusionCode": [{"coding": [{"system": C.SNOMED, "code": concl[0],
                                            "display": concl[1]}]}],
        }
        ref = self._add("DiagnosticReport", res)
        self.procs.append(Fact(ref, img.loinc, t))
        return ref

    def medication(self, name: str, t: datetime, *, enc: str | None = None,
                   status: str = "active") -> str:
        scd, display, ingredient = C.MEDS[name]
        res: Resource = {
            "resourceType": "MedicationRequest",
            "id": self.uid(),
            "status": status,
            "intent": "order",
            "medicationCodeableConcept": {
                "coding": [
                    {"system": C.RXNORM, "code": scd, "display": display},
                    {"system": C.RXNORM, "code": ingredient},
                ],
                "text": display,
            },
            "subject": self._subject(),
            "authoredOn": self.ts(t),
            "dosageInstruction": [{"text": "Take 1 tablet by mouth daily"}],
        }
        if enc is not None:
            res["encounter"] = {"reference": enc}
        ref = self._add("MedicationRequest", res)
        self.meds.append(Fact(ref, name, t, status=status))
        return ref

    def order(self, enc: str, t: datetime, code: tuple[str, str, str], status: str) -> str:
        """A ServiceRequest: ``code`` is (system uri, code, display)."""
        res: Resource = {
            "resourceType": "ServiceRequest",
            "id": self.uid(),
            "status": status,
            "intent": "order",
            "code": {"coding": [{"system": code[0], "code": code[1], "display": code[2]}]},
            "subject": self._subject(),
            "encounter": {"reference": enc},
            "authoredOn": self.ts(t),
        }
        return self._add("ServiceRequest", res)


_RECORD_START = datetime(2019, 1, 1)
_ENC_CLASS = {
    "AMB": ({"system": C.V3_ACT, "code": "AMB", "display": "ambulatory"},
            {"system": C.SNOMED, "code": "185349003", "display": "Encounter for check up"}),
    "ED": ({"system": C.V3_ACT, "code": "EMER", "display": "emergency"},
           {"system": C.SNOMED, "code": "50849002", "display": "Emergency room admission"}),
    "IP": ({"system": C.V3_ACT, "code": "IMP", "display": "inpatient encounter"},
           {"system": C.SNOMED, "code": "32485007", "display": "Hospital admission"}),
}
_ELECTIVE = {"system": C.SNOMED, "code": "8715000", "display": "Hospital admission, elective"}
_EMERGENCY_ADMIT = {"system": C.SNOMED, "code": "183452005",
                    "display": "Emergency hospital admission"}
_GI_VISIT = {"system": C.SNOMED, "code": "11429006", "display": "Consultation"}
_GASTRO = {"system": C.SNOMED, "code": "394584008", "display": "Gastroenterology"}
_ADMITTED = {"system": C.SNOMED, "code": "306706006", "display": "Discharge to ward"}


def _qty(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": C.UCUM, "code": unit}


def _short_codes(coding: list[dict[str, str]]) -> tuple[str, ...]:
    return tuple(
        ("icd10:" + c["code"].replace(".", "").upper())
        if c["system"] == C.ICD10
        else "snomed:" + c["code"]
        for c in coding
    )


def _utc(t: datetime) -> str:
    return t.isoformat(timespec="seconds") + "Z"


def outside_report(chart: Chart, t: datetime, code: tuple[str, str], conclusion: str) -> str:
    """A scanned report from another organisation (a DiagnosticReport with no encounter)."""
    res: Resource = {
        "resourceType": "DiagnosticReport",
        "id": chart.uid(),
        "status": "final",
        "category": [{"coding": [{"system": C.V2_0074, "code": "OTH"}]}],
        "code": {"coding": [{"system": C.LOINC, "code": code[0], "display": code[1]}]},
        "subject": {"reference": f"Patient/{chart.pid}"},
        "effectiveDateTime": chart.ts(t),
        "issued": _utc(t + timedelta(days=2)),
        "conclusion": conclusion,
    }
    return chart._add("DiagnosticReport", res)
