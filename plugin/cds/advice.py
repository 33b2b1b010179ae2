"""What each hook says: FHIR resources → Timeline → rule findings / model risks → cards.

Built once at app start (:meth:`Advisor.build`: the app's ruleset, the model) and shared
by every request; :meth:`Advisor.advise` is pure apart from reading that state. Every
question about a rule goes through the rules API (:mod:`plugin.rules`), which answers it
with the engine's semantics; nothing here reads a rule's logic block.

* patient-view, encounter-start: open follow-ups (:func:`plugin.rules.open_findings`:
  findings of rules a follow-up closes, whose window closed in the look-back period, with
  no follow-up since, late or not). Sequence findings (symptom, then the disease) are
  history for the worklist, not something to act on at the chart.
* order-sign: the same open follow-ups; a draft order with one of the finding's
  :func:`~plugin.rules.closing_codes` gets an info card acknowledging it; the others get a
  suggestion to order :func:`~plugin.rules.followup_order`.
* encounter-discharge: the ranker's real-time risk when a model is configured; otherwise the
  rules that advise at discharge (:func:`~plugin.rules.advises_at_discharge`) whose index
  pattern (with its require/exclude conditions) this encounter matches
  (:func:`~plugin.rules.index_matches`): the discharges that precede missed diagnoses.
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
from plugin.rules import (
    CodeSet,
    FollowUp,
    Rule,
    RuleSet,
    advises_at_discharge,
    closing_codes,
    followup_order,
    index_matches,
    open_findings,
)
from plugin.timeline.codes import normalise
from plugin.timeline.model import Code, Finding, Kind, Timeline

log = logging.getLogger(__name__)

MAX_CARDS = 5  # more than a handful of cards per call is alert fatigue, not safety


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
    followups: Mapping[str, FollowUp]
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
        ruleset: RuleSet,
        model_dir: Path | None,
        base_url: str,
        lookback_days: int,
        risk_threshold: float,
        validate: str,
    ) -> Advisor:
        """``ruleset`` as loaded once by the app."""
        shown = tuple(r for r in ruleset.rules if "hunting" not in Path(r.path).parts)
        ranker = None
        if model_dir is not None:
            from plugin.rank import load_model  # LightGBM only when a model is configured

            ranker = load_model(model_dir)
        return cls(
            rules=shown,
            ruleset=ruleset,
            followups={r.id: f for r in shown if (f := followup_order(r)) is not None},
            expected={r.id: closing_codes(r) for r in shown},
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
        return open_findings(self.rules, tl, now=now, lookback=self.lookback)

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
            if not advises_at_discharge(rule):
                continue
            evidence = index_matches(rule, tl, encounter)
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
