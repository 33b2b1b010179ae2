"""Cards from findings and risks: wording, indicator, links, suggestions, override reasons.

Brief by design (alert fatigue is a safety problem too): a summary under 140 characters and
at most three short detail lines (what happened, when, what to consider). The rationale,
published PPV, look-alikes and evidence live on the worklist case the card links to.

Every card and suggestion gets a fresh UUID per call (:func:`new_uuid`), so feedback says
which call's card it was; :class:`IssuedCard` records which finding each card was about
(``cds_cards`` in the worklist database). Text that came from the patient's record is
escaped: some clients render raw HTML inside ``detail``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from plugin.cds.models import Action, Card, Coding, Link, Source, Suggestion
from plugin.rules import FollowUp, Rule
from plugin.timeline.model import Finding

NAMESPACE = uuid.UUID("5b0c1f8e-8d4f-4c1e-9a57-0d3c2f6e4a11")  # dxsafety CDS cards
RULE_SYSTEM = "urn:dxsafety:rule"
RISK_SYSTEM = "urn:dxsafety:missed-dx"
SOURCE_LABEL = "dxsafety diagnostic safety"
NON_ADHERENCE = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"

# Spec 3.0 example CodeSystem (non-adherence-reason-codes); displays verbatim from it.
OVERRIDE_REASONS: tuple[Coding, ...] = tuple(
    Coding(code=code, system=NON_ADHERENCE, display=display)
    for code, display in (
        ("action-completed", "Recommended action was already completed"),
        ("indication-order-exists", "Patient has indication/order for intended action"),
        ("patient-ineligible", "Patient does not meet eligibility for recommended action"),
        (
            "action-not-priority",
            "Recommended action is not relevant or a priority in current state of health",
        ),
        (
            "need-more-info",
            "Could not address recommended action due to need for more "
            "information/pending results/pending consult",
        ),
        (
            "recipient-does-not-trust",
            "Recipient does not agree with or trust the recommended action",
        ),
        ("patient-refuses", "Patient refuses/declines (no context given)*"),
    )
)

_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|~])")  # what can start emphasis, code, links, tables


def md(text: str) -> str:
    """Plain text made safe for GitHub-flavoured Markdown rendered with raw HTML."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def code(text: str) -> str:
    """A code span (FHIR references): Markdown and HTML are inert inside, backticks are not."""
    return "`" + text.replace("`", "'").replace("\n", " ") + "`"


def short(text: str, limit: int = 139) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def card_uuid(key: str) -> str:
    """The deterministic id cards about finding ``key`` carried before issue 14 (kept so
    feedback stored then still joins); cards now carry :func:`new_uuid`, joined through
    ``cds_cards`` (:func:`plugin.cds.issued.finding_keys`)."""
    return str(uuid.uuid5(NAMESPACE, f"card|{key}"))


def new_uuid() -> str:
    """One uuid per card (or suggestion) per call."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class IssuedCard:
    card_id: str
    finding_key: str


def _indicator(level: str, recent: bool) -> str:
    if level == "critical" and recent:
        return "critical"
    return "warning" if level in ("critical", "high") else "info"


CASE_LINK_LABEL = "Why this card: evidence, rationale, PPV, look-alikes (dxsafety worklist)"


def case_link(base_url: str, key: str, link_type: str = "absolute") -> Link:
    """The worklist case, where the rationale lives. ``smart``: for EHRs that launch apps
    (the EHR adds ``launch``/``iss``; ``appContext`` names the case)."""
    url = f"{base_url.rstrip('/')}/worklist/cases/{key}"
    if link_type == "smart":
        return Link(label=CASE_LINK_LABEL, url=url, type="smart", appContext=f"case={key}")
    return Link(label=CASE_LINK_LABEL, url=url, type="absolute")


def _rule_source(rule: Rule) -> Source:
    return Source(
        label=SOURCE_LABEL,
        topic=Coding(code=rule.id, system=RULE_SYSTEM, display=short(rule.title, 200)),
    )


def _service_request(
    follow: FollowUp, finding: Finding, context: dict[str, Any], now: datetime
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "code": {"coding": [dict(c) for c in follow.coding], "text": follow.label},
        "subject": {"reference": f"Patient/{finding.patient_id}"},
        "authoredOn": now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "reasonReference": [{"reference": finding.index_ref}],
    }
    if context.get("encounterId"):
        resource["encounter"] = {"reference": f"Encounter/{context['encounterId']}"}
    user = str(context.get("userId") or "")
    if user.startswith(("Practitioner/", "PractitionerRole/")):
        resource["requester"] = {"reference": user}
    return resource


def line(text: str, limit: int = 160) -> str:
    """One short detail line (already Markdown-safe text)."""
    return short(text, limit)


def finding_card(
    finding: Finding,
    rule: Rule,
    *,
    base_url: str,
    follow: FollowUp | None,
    context: dict[str, Any],
    now: datetime,
    link_type: str = "absolute",
) -> Card:
    """An open follow-up for this patient: what happened, when, what to consider."""
    when = finding.index_start.date().isoformat()
    due = finding.window_end.date().isoformat()
    consider = (
        f"Consider: {md(follow.label)}, or record why it is not needed."
        if follow is not None
        else "Consider: whether follow-up is still needed, and record the decision."
    )
    detail = [
        line(f"What happened: {md(finding.summary)}."),
        line(f"When: {md(when)}; follow-up was expected by {md(due)}."),
        line(consider),
    ]
    suggestions = None
    if follow is not None:
        resource = _service_request(follow, finding, context, now)
        suggestions = [
            Suggestion(
                label=short(f"Order {follow.label}", 80),
                uuid=new_uuid(),
                isRecommended=True,
                actions=[
                    Action(
                        type="create",
                        description=short(f"Draft order: {follow.label}"),
                        resource=resource,
                    )
                ],
            )
        ]
    recent = (now - finding.window_end).days <= 14
    return Card(
        uuid=new_uuid(),
        summary=short(f"{rule.title} (since {when})"),
        detail="\n\n".join(detail),
        indicator=_indicator(finding.level, recent),  # type: ignore[arg-type]
        source=_rule_source(rule),
        suggestions=suggestions,
        selectionBehavior="at-most-one" if suggestions else None,
        overrideReasons=list(OVERRIDE_REASONS),
        links=[case_link(base_url, finding.key, link_type)],
    )


def closed_card(
    finding: Finding,
    rule: Rule,
    *,
    base_url: str,
    orders: Sequence[str],
    link_type: str = "absolute",
) -> Card:
    """A draft order (or appointment) closes an open follow-up: acknowledge it (info)."""
    what = ", ".join(orders[:3])
    return Card(
        uuid=new_uuid(),
        summary=short(f"This closes an open follow-up: {rule.title}"),
        detail="\n\n".join(
            [
                line(f"What: {md(what)}."),
                line(
                    f"Open since: {md(finding.index_start.date().isoformat())}: "
                    f"{md(finding.summary)}."
                ),
                "The worklist case stays open until the result is recorded.",
            ]
        ),
        indicator="info",
        source=_rule_source(rule),
        links=[case_link(base_url, finding.key, link_type)],
    )


def timeout_card(budget_s: float) -> Card:
    """The patient's record could not be read in time: say so rather than stay silent."""
    return Card(
        uuid=new_uuid(),
        summary="dxsafety could not read this patient's record in time: no follow-up check",
        detail="\n\n".join(
            [
                line(f"The EHR's FHIR server did not answer within {budget_s:g} s."),
                "No open follow-ups were checked for this visit; the absence of a card "
                "means nothing.",
            ]
        ),
        indicator="info",
        source=Source(label=SOURCE_LABEL),
    )


def risk_card(
    *,
    key: str,
    label: str,
    probability: float,
    reasons: Sequence[str],
    encounter_ref: str,
    base_url: str,
    model_name: str,
) -> Card:
    """Real-time risk from the ranker at this encounter."""
    indicator = "critical" if probability >= 0.5 else "warning"
    summary = short(f"Consider {label}: est. 30-day risk of a missed diagnosis {probability:.0%}")
    why = "; ".join(md(r) for r in reasons[:3]) or "no explanation available"
    detail = "\n\n".join(
        [
            line(
                f"At this encounter ({code(encounter_ref)}): {probability:.1%} estimated "
                f"probability that {md(label)} is diagnosed within 30 days."
            ),
            line(f"Main reasons: {why}."),
            line(f"Consider {md(label)} before discharge (model {md(model_name)})."),
        ]
    )
    return Card(
        uuid=new_uuid(),
        summary=summary,
        detail=detail,
        indicator=indicator,  # type: ignore[arg-type]
        source=Source(
            label=SOURCE_LABEL,
            topic=Coding(code=label, system=RISK_SYSTEM, display=short(label, 200)),
        ),
        overrideReasons=list(OVERRIDE_REASONS),
    )


def pattern_card(*, key: str, rule: Rule, encounter_ref: str, evidence: Sequence[str]) -> Card:
    """Rules-only discharge advice: this encounter matches the index pattern of a rule."""
    pub = rule.published
    ppv = f" (published PPV {pub.ppv:.0%})" if pub is not None and pub.ppv is not None else ""
    dx = next(
        (t.split(".", 1)[1].replace("_", " ") for t in rule.tags if t.startswith("dx.")),
        "a missed diagnosis",
    )
    trigger = f"e-trigger {rule.trigger}" if rule.trigger else "an e-trigger"
    detail = [
        line(
            f"What happened: this encounter ({code(encounter_ref)}) matches the start of "
            f"*{md(rule.title)}*."
        ),
        line(f"Evidence: {', '.join(code(ref) for ref in evidence[:3])}."),
        line(f"Consider: has {md(dx)} been considered before discharge?"),
    ]
    return Card(
        uuid=new_uuid(),
        summary=short(f"Consider {dx} before discharge: this visit matches {trigger}{ppv}"),
        detail="\n\n".join(detail),
        indicator="warning" if rule.level.name in ("high", "critical") else "info",
        source=_rule_source(rule),
        overrideReasons=list(OVERRIDE_REASONS),
    )
