"""What each hook says: FHIR resources → Timeline → rule findings / model risks → cards.

Built once at app start (:meth:`Advisor.build`: rules, value sets, model) and shared by
every request; :meth:`Advisor.advise` is pure apart from reading that state.

* patient-view, encounter-start: open follow-ups (absence findings whose window closed in
  the look-back period, with no late follow-up either). Sequence findings (symptom, then
  the disease) are history for the worklist, not something to act on at the chart.
* order-sign: the same open follow-ups; a draft order whose code is an expected follow-up
  of a finding gets an info card acknowledging it; the others get a suggestion.
* encounter-discharge: the ranker's real-time risk when a model is configured; otherwise the
  sequence rules whose index pattern (with its require/exclude conditions) this encounter
  matches: the discharges that precede missed diagnoses.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from plugin.cds import cards
from plugin.cds.models import Card, OrderSignContext, PatientContext
from plugin.cds.services import Service
from plugin.errors import FhirParseError, ModelError
from plugin.fhir.parse import timeline_from_resources
from plugin.rules import Rule, RuleSet, evaluate, index_matches, load_rules
from plugin.rules.codesets import CodeSet
from plugin.rules.loader import find_valueset_dir, load_valuesets
from plugin.rules.schema import ValueSetSpec
from plugin.rules.selectors import resolve_codes
from plugin.timeline.codes import normalise
from plugin.timeline.model import Code, Event, Finding, Kind, Timeline

log = logging.getLogger(__name__)

MAX_CARDS = 5  # more than a handful of cards per call is alert fatigue, not safety
ORDERABLE = frozenset({"procedure", "order", "observation", "report"})
SYSTEM_URIS = {
    "snomed": "http://snomed.info/sct",
    "loinc": "http://loinc.org",
    "cpt": "http://www.ama-assn.org/go/cpt",
    "hcpcs": "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
}


def _followup(rule: Rule, specs: Mapping[str, ValueSetSpec]) -> cards.FollowUp | None:
    """The first orderable expected follow-up with a concrete code (SNOMED preferred)."""
    logic: Any = rule.spec.logic
    for sel in getattr(logic, "expect_any", None) or []:
        kinds = sel.kind if isinstance(sel.kind, list) else [sel.kind]
        if not ORDERABLE.intersection(kinds) or not sel.codes:
            continue
        for ref in sel.codes:
            system, _, code = ref.partition(":")
            if system == "valueset" and code in specs:
                spec = specs[code]
                by_system: dict[str, list[str | int]] = {str(k): v for k, v in spec.codes.items()}
                codings = [
                    {"system": uri, "code": str(by_system[s][0]).split("-")[0]}
                    for s, uri in SYSTEM_URIS.items()
                    if by_system.get(s)
                ]
                if codings:
                    label = spec.title.split(" (")[0].strip()
                    return cards.FollowUp(label=label, coding=tuple(codings[:1]))
            elif system in SYSTEM_URIS and "-" not in code.strip("-"):
                return cards.FollowUp(
                    label=f"{system.upper()} {code}",
                    coding=({"system": SYSTEM_URIS[system], "code": code},),
                )
    return None


def _expected_codes(rule: Rule, valuesets: Mapping[str, CodeSet]) -> CodeSet:
    out = CodeSet()
    logic: Any = rule.spec.logic
    for sel in getattr(logic, "expect_any", None) or []:
        if sel.codes:
            out.update(resolve_codes(sel.codes, valuesets))
    return out


def _draft_codes(resource: Mapping[str, Any]) -> list[Code]:
    concept = resource.get("code") or resource.get("medicationCodeableConcept") or {}
    codings = concept.get("coding") if isinstance(concept, dict) else None
    return [
        normalise(c.get("system"), str(c["code"]))
        for c in codings or []
        if isinstance(c, dict) and c.get("code")
    ]


def _draft_label(resource: Mapping[str, Any]) -> str:
    concept = resource.get("code") or resource.get("medicationCodeableConcept") or {}
    text = concept.get("text") if isinstance(concept, dict) else None
    if not text and isinstance(concept, dict):
        text = next(
            (
                c.get("display")
                for c in concept.get("coding") or []
                if isinstance(c, dict) and c.get("display")
            ),
            None,
        )
    return str(text or f"{resource.get('resourceType')}/{resource.get('id', '?')}")


def _digest(*parts: str) -> str:
    return hashlib.sha1("|".join(parts).encode(), usedforsecurity=False).hexdigest()[:24]


@dataclass(frozen=True, slots=True, kw_only=True)
class Advice:
    cards: list[Card]
    findings: list[Finding]  # the findings whose worklist cases the cards link to
    timeline: Timeline


@dataclass(frozen=True, slots=True, kw_only=True)
class Advisor:
    rules: tuple[Rule, ...]  # the rules shown in CDS (not hunting packs)
    ruleset: RuleSet
    followups: Mapping[str, cards.FollowUp]
    expected: Mapping[str, CodeSet]
    ranker: Any | None
    model_name: str
    base_url: str
    lookback: timedelta
    risk_threshold: float
    validate: str

    @classmethod
    def build(
        cls,
        *,
        rules_dir: Path,
        model_dir: Path | None,
        base_url: str,
        lookback_days: int,
        risk_threshold: float,
        validate: str,
    ) -> Advisor:
        ruleset = load_rules(rules_dir)
        _, specs, _ = load_valuesets(
            find_valueset_dir(rules_dir if rules_dir.is_dir() else rules_dir.parent)
        )
        shown = tuple(r for r in ruleset.rules if "hunting" not in Path(r.path).parts)
        ranker = None
        if model_dir is not None:
            from plugin.rank import load_model  # LightGBM only when a model is configured

            ranker = load_model(model_dir)
        return cls(
            rules=shown,
            ruleset=ruleset,
            followups={r.id: f for r in shown if (f := _followup(r, specs)) is not None},
            expected={r.id: _expected_codes(r, ruleset.valuesets) for r in shown},  # type: ignore[arg-type]
            ranker=ranker,
            model_name=model_dir.name if model_dir is not None else "",
            base_url=base_url,
            lookback=timedelta(days=lookback_days),
            risk_threshold=risk_threshold,
            validate=validate,
        )

    # --- helpers --------------------------------------------------------------------------
    def timeline(self, resources: Sequence[dict[str, Any]], patient_id: str) -> Timeline:
        """Parse with ``settings.cds_validate``; "fast" by default. Fast rejects a resource
        exactly when a field the timeline reads is malformed, and every card is built only
        from those fields. Full (R4B models) also rejects resources for faults in fields we
        never read, and a dropped colonoscopy would turn into a false "no follow-up" card;
        it also costs ~5x the time (bench/cds_bench.py)."""
        errors: list[FhirParseError] = []
        tl = timeline_from_resources(
            resources,
            validate=self.validate,  # type: ignore[arg-type]
            errors=errors,
            patient_id=patient_id,
        )
        if errors:
            kinds = Counter(e.resource_type or "?" for e in errors)
            log.info("skipped %d unusable resource(s) in a hook call: %s", len(errors), dict(kinds))
        return tl

    def _rule(self, rule_id: str) -> Rule:
        return next(r for r in self.rules if r.id == rule_id)

    def open_findings(self, tl: Timeline, now: datetime) -> list[Finding]:
        absence = [r for r in self.rules if r.type == "absence"]
        findings = evaluate(absence, tl, as_of=now)
        idx = {e.source: e for e in tl.events}
        out = []
        for f in findings:
            if f.window_end < now - self.lookback:
                continue
            rule = self._rule(f.rule_id)
            index = idx.get(f.index_ref)
            late = any(
                m(e)
                for e in tl.events
                if e.t > f.window_end
                for m in rule.expect_any
                if e is not index
            )
            if not late:
                out.append(f)
        out.sort(key=lambda f: (-self._rule(f.rule_id).level, -f.window_end.timestamp()))
        return out

    # --- hooks ----------------------------------------------------------------------------
    def advise(
        self,
        service: Service,
        ctx: PatientContext,
        resources: Sequence[dict[str, Any]],
        now: datetime,
    ) -> Advice:
        tl = self.timeline(resources, ctx.patientId)
        if service.hook == "encounter-discharge":
            found = self.discharge(tl, f"Encounter/{ctx.encounterId}", now)[:MAX_CARDS]
            return Advice(cards=found, findings=[], timeline=tl)
        findings = self.open_findings(tl, now)[:MAX_CARDS]
        context = ctx.model_dump(exclude={"draftOrders"})
        if isinstance(ctx, OrderSignContext):
            signed = self.order_sign(findings, ctx, context, now)[:MAX_CARDS]
            return Advice(cards=signed, findings=findings, timeline=tl)
        shown = [
            cards.finding_card(
                f,
                self._rule(f.rule_id),
                base_url=self.base_url,
                follow=self.followups.get(f.rule_id),
                context=context,
                now=now,
            )
            for f in findings
        ]
        return Advice(cards=shown, findings=findings, timeline=tl)

    def order_sign(
        self, findings: list[Finding], ctx: OrderSignContext, context: dict[str, Any], now: datetime
    ) -> list[Card]:
        drafts = [(r, _draft_codes(r)) for r in ctx.draft_resources()]
        out: list[Card] = []
        for f in findings:
            rule = self._rule(f.rule_id)
            expected = self.expected.get(rule.id, CodeSet())
            closing = [_draft_label(r) for r, codes in drafts if expected.any_of(codes)]
            if closing:
                out.append(cards.closed_card(f, rule, base_url=self.base_url, orders=closing))
            else:
                out.append(
                    cards.finding_card(
                        f,
                        rule,
                        base_url=self.base_url,
                        follow=self.followups.get(rule.id),
                        context=context,
                        now=now,
                    )
                )
        out.sort(key=lambda c: c.indicator != "info")  # acknowledgements of this order first
        return out

    def discharge(self, tl: Timeline, encounter_ref: str, now: datetime) -> list[Card]:
        encounter = next(
            (e for e in tl.events if e.source == encounter_ref and e.kind is Kind.ENCOUNTER), None
        )
        if encounter is None:
            return []
        if self.ranker is not None:
            try:
                risks = self.ranker.realtime_risk(tl, encounter_ref)
            except ModelError as exc:
                log.warning("real-time model unavailable for this encounter, using rules: %s", exc)
            else:
                return [
                    cards.risk_card(
                        key=_digest(tl.patient.id, encounter_ref, r.diagnosis),
                        label=r.label,
                        probability=r.probability,
                        reasons=r.reasons,
                        encounter_ref=encounter_ref,
                        base_url=self.base_url,
                        model_name=self.model_name,
                    )
                    for r in risks
                    if r.probability >= self.risk_threshold
                ]
        out = []
        for rule in self.rules:
            if rule.type != "sequence" or not _clinical_index(rule):
                continue
            evidence = _pattern_hits(rule, tl, encounter)
            if evidence is not None:
                out.append(
                    cards.pattern_card(
                        key=_digest(tl.patient.id, rule.id, encounter_ref),
                        rule=rule,
                        encounter_ref=encounter_ref,
                        evidence=evidence,
                    )
                )
        out.sort(key=lambda c: c.indicator != "warning")
        return out


def _clinical_index(rule: Rule) -> bool:
    """The index names a clinical problem (codes or diagnoses), not just "an ED visit": a
    rule like "any ED visit, then death within 24 h" matches every discharge and says
    nothing about this one."""
    logic: Any = rule.spec.logic
    index = logic.index if isinstance(logic.index, list) else [logic.index]
    return all(sel.codes or sel.diagnosis for sel in index)


def _pattern_hits(rule: Rule, tl: Timeline, index: Event) -> list[str] | None:
    """Evidence if ``index`` starts the rule's pattern (the engine's own semantics)."""
    return index_matches(rule, tl, index)
