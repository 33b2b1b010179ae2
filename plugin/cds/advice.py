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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from plugin.cds import cards
from plugin.cds.cards import IssuedCard
from plugin.cds.fastpath import ReadPlan, read_plan
from plugin.cds.models import (
    AppointmentBookContext,
    Card,
    OrderSelectContext,
    OrderSignContext,
    PatientContext,
)
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
from plugin.rules.api import RuleIndex, rule_index
from plugin.timeline.codes import normalise
from plugin.timeline.model import Code, Finding, Kind, Timeline

log = logging.getLogger(__name__)

MAX_CARDS = 5  # more than a handful of cards per call is alert fatigue, not safety


# where an order or a proposed appointment names what it is for
_CONCEPT_FIELDS = (
    "code", "medicationCodeableConcept", "serviceType", "appointmentType", "reasonCode",
    "serviceCategory", "specialty",
)  # fmt: skip


def _concepts(resource: Mapping[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in _CONCEPT_FIELDS:
        value = resource.get(name)
        for concept in value if isinstance(value, list) else [value]:
            if isinstance(concept, dict):
                out.append(concept)
    return out


def _codings(concept: Mapping[str, Any]) -> list[dict[str, Any]]:
    codings = concept.get("coding")
    return [c for c in codings if isinstance(c, dict)] if isinstance(codings, list) else []


def _draft_codes(resource: Mapping[str, Any]) -> list[Code]:
    """The codes of a draft order or proposed appointment (client data: any shape)."""
    return [
        normalise(c["system"] if isinstance(c.get("system"), str) else None, str(c["code"]))
        for concept in _concepts(resource)
        for c in _codings(concept)
        if isinstance(c.get("code"), str | int) and not isinstance(c.get("code"), bool)
        and str(c.get("code")).strip()
    ]  # fmt: skip


def _draft_label(resource: Mapping[str, Any]) -> str:
    for concept in _concepts(resource):
        text = concept.get("text")
        if isinstance(text, str) and text.strip():
            return text[:200]
        for c in _codings(concept):
            if isinstance(c.get("display"), str) and c["display"].strip():
                return str(c["display"])[:200]
    return f"{resource.get('resourceType')}/{resource.get('id', '?')}"[:200]


def _digest(*parts: str) -> str:
    return hashlib.sha1("|".join(parts).encode(), usedforsecurity=False).hexdigest()[:24]


@dataclass(frozen=True, slots=True, kw_only=True)
class Advice:
    cards: list[Card]
    findings: list[Finding]  # the findings whose worklist cases the cards link to
    timeline: Timeline
    issued: list[IssuedCard] = field(default_factory=list)  # card uuid -> finding key
    suppressed: list[Finding] = field(default_factory=list)  # closed as not a MOD: no card
    # When ``timeline`` (what the rules saw) skipped the Observations no rule reads
    # (plugin.cds.fastpath): the timeline for the worklist snapshots, which show them.
    rebuild: Callable[[], Timeline] | None = None

    def snapshot_timeline(self) -> Timeline:
        """A timeline whose worklist snapshots of ``findings`` are those of every resource."""
        return self.rebuild() if self.rebuild is not None else self.timeline


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
    link_type: str = "absolute"
    index: RuleIndex | None = None  # rules by the event kinds/codes that can start them
    plan: ReadPlan | None = None  # the Observations the rules can read (None: all)

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
        link_type: str = "absolute",
        fast_path: bool = True,
    ) -> Advisor:
        """``ruleset`` as loaded once by the app. ``fast_path``: skip the Observations no
        shown rule can read (:mod:`plugin.cds.fastpath`; same findings, ~5x less CPU)."""
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
            link_type=link_type,
            index=rule_index(shown, ruleset.valuesets),
            plan=read_plan(shown, ruleset.valuesets) if fast_path else None,
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
        rules = self.index.candidates(tl) if self.index is not None else self.rules
        return open_findings(rules, tl, now=now, lookback=self.lookback)

    # --- hooks ----------------------------------------------------------------------------
    def advise(
        self,
        service: Service,
        ctx: PatientContext,
        resources: Sequence[dict[str, Any]],
        now: datetime,
        *,
        closed: Callable[[Sequence[str]], frozenset[str]] | None = None,
    ) -> Advice:
        """``closed``: of these finding keys, those the worklist closed as not a missed
        opportunity (their cards are suppressed and listed in ``Advice.suppressed``)."""
        # the real-time model reads every event (vital signs too): no skipping for it
        realtime = service.hook == "encounter-discharge" and self.ranker is not None
        plan = None if realtime else self.plan
        tl = self.timeline(plan.relevant(resources) if plan else resources, ctx.patientId)
        if service.hook == "encounter-discharge":
            found = self.discharge(tl, f"Encounter/{ctx.encounterId}", now)[:MAX_CARDS]
            return Advice(cards=found, findings=[], timeline=tl)
        findings = self.open_findings(tl, now)
        suppressed: list[Finding] = []
        if closed is not None and findings:
            done = closed([f.key for f in findings])
            suppressed = [f for f in findings if f.key in done]
            findings = [f for f in findings if f.key not in done]
        findings = findings[:MAX_CARDS]
        context = ctx.model_dump(exclude={"draftOrders", "appointments", "selections"})
        pairs: list[tuple[Finding, Card]]
        if isinstance(ctx, OrderSelectContext):
            pairs = self.closing(findings, ctx.selected_resources(), only_closing=True)
        elif isinstance(ctx, OrderSignContext):
            pairs = self.closing(findings, ctx.draft_resources(), context=context, now=now)
        elif isinstance(ctx, AppointmentBookContext):
            pairs = self.closing(findings, ctx.appointment_resources(), only_closing=True)
        else:
            pairs = [(f, self._finding_card(f, context, now)) for f in findings]
        pairs = pairs[:MAX_CARDS]
        shown = [f for f, _ in pairs]
        rebuild = None
        if plan is not None and shown:
            around, pid = plan.around, ctx.patientId

            def rebuild() -> Timeline:  # after the reply, for the worklist snapshots
                return self.timeline(around(resources, shown), pid)

        return Advice(
            cards=[c for _, c in pairs],
            findings=shown,
            timeline=tl,
            issued=[IssuedCard(c.uuid, f.key) for f, c in pairs],
            suppressed=suppressed,
            rebuild=rebuild,
        )

    def _finding_card(self, f: Finding, context: dict[str, Any], now: datetime) -> Card:
        return cards.finding_card(
            f,
            self._rule(f.rule_id),
            base_url=self.base_url,
            follow=self.followups.get(f.rule_id),
            context=context,
            now=now,
            link_type=self.link_type,
        )

    def closing(
        self,
        findings: list[Finding],
        resources: Sequence[Mapping[str, Any]],
        *,
        context: dict[str, Any] | None = None,
        now: datetime | None = None,
        only_closing: bool = False,
    ) -> list[tuple[Finding, Card]]:
        """Orders or appointments against the open follow-ups: an info card when one of them
        closes a finding (:func:`~plugin.rules.closing_codes`); for the others, the finding's
        card (order-sign) or nothing (``only_closing``: order-select, appointment-book)."""
        drafts = [(r, _draft_codes(r)) for r in resources]
        out: list[tuple[Finding, Card]] = []
        for f in findings:
            rule = self._rule(f.rule_id)
            expected = self.expected.get(rule.id, CodeSet())
            closing = [_draft_label(r) for r, codes in drafts if expected.any_of(codes)]
            if closing:
                card = cards.closed_card(
                    f, rule, base_url=self.base_url, orders=closing, link_type=self.link_type
                )
                out.append((f, card))
            elif not only_closing and context is not None and now is not None:
                out.append((f, self._finding_card(f, context, now)))
        out.sort(key=lambda fc: fc[1].indicator != "info")  # acknowledgements first
        return out

    def discharge(self, tl: Timeline, encounter_ref: str, now: datetime) -> list[Card]:
        encounter = next(
            (e for e in tl.events if e.source == encounter_ref and e.kind is Kind.ENCOUNTER), None
        )
        if encounter is None:
            return []
        # issue 13: a real-time head that did not beat the red-flag/vital-sign baseline
        # (model.json cards.realtime.status == "hold") is not shown; the rules advise instead
        if self.ranker is not None and self.ranker.ships_in_cards("realtime"):
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
        for rule in self.index.candidates(tl) if self.index is not None else self.rules:
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
