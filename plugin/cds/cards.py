"""Cards from findings and risks: wording, indicator, links, suggestions, override reasons.

Card and suggestion UUIDs are deterministic (UUIDv5 of the finding key), so feedback can
be joined back to the worklist's finding without us storing every card we ever sent:
the worklist computes :func:`card_uuid` of its finding keys. Text that came from the
patient's record is escaped: some clients render raw HTML inside ``detail``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
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
    """The UUID of the card about finding ``key`` (stable across calls and restarts)."""
    return str(uuid.uuid5(NAMESPACE, f"card|{key}"))


def suggestion_uuid(key: str, what: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"suggestion|{key}|{what}"))


def _indicator(level: str, recent: bool) -> str:
    if level == "critical" and recent:
        return "critical"
    return "warning" if level in ("critical", "high") else "info"


def _case_link(base_url: str, key: str) -> Link:
    return Link(
        label="Open the case in the dxsafety worklist",
        url=f"{base_url.rstrip('/')}/worklist/cases/{key}",
        type="absolute",
    )


def _rule_source(rule: Rule) -> Source:
    return Source(
        label=SOURCE_LABEL,
        topic=Coding(code=rule.id, system=RULE_SYSTEM, display=short(rule.title, 200)),
    )


def _rule_facts(rule: Rule) -> list[str]:
    lines = [f"**Why it matters.** {md(short(rule.description, 600))}"]
    pub = rule.published
    if pub is not None and pub.ppv is not None:
        n = f", n = {pub.n}" if pub.n else ""
        cite = f" ({md(short(pub.citation, 160))})" if pub.citation else ""
        lines.append(f"**Published positive predictive value.** {pub.ppv:.0%}{n}{cite}.")
    fps = rule.falsepositives
    if fps:
        lines.append("**Known look-alikes.** " + "; ".join(md(f) for f in fps[:3]) + ".")
    trig = f", trigger {rule.trigger}" if rule.trigger else ""
    lines.append(f"_Rule {rule.id} ({rule.status.value}, level {rule.level.name}{trig})._")
    return lines


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


def finding_card(
    finding: Finding,
    rule: Rule,
    *,
    base_url: str,
    follow: FollowUp | None,
    context: dict[str, Any],
    now: datetime,
) -> Card:
    """An open follow-up (absence) or a missed-diagnosis pattern (sequence) for this patient."""
    when = finding.index_start.date().isoformat()
    summary = short(f"{rule.title} (since {when})")
    detail = [
        f"**What happened.** {md(finding.summary)}.",
        f"**Window.** {md(when)} to {md(finding.window_end.date().isoformat())}.",
        "**Evidence.** " + ", ".join(code(ref) for ref in finding.evidence) + ".",
        *_rule_facts(rule),
    ]
    suggestions = None
    if follow is not None:
        resource = _service_request(follow, finding, context, now)
        suggestions = [
            Suggestion(
                label=short(f"Order {follow.label}", 80),
                uuid=suggestion_uuid(finding.key, "order"),
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
        uuid=card_uuid(finding.key),
        summary=summary,
        detail="\n\n".join(detail),
        indicator=_indicator(finding.level, recent),  # type: ignore[arg-type]
        source=_rule_source(rule),
        suggestions=suggestions,
        selectionBehavior="at-most-one" if suggestions else None,
        overrideReasons=list(OVERRIDE_REASONS),
        links=[_case_link(base_url, finding.key)],
    )


def closed_card(finding: Finding, rule: Rule, *, base_url: str, orders: Sequence[str]) -> Card:
    """A draft order closes an open follow-up: acknowledge it (info)."""
    what = ", ".join(orders[:3])
    return Card(
        uuid=card_uuid(f"{finding.key}|closed"),
        summary=short(f"This order closes an open follow-up: {rule.title}"),
        detail="\n\n".join(
            [
                f"**Order.** {md(what)}.",
                f"**Open since.** {md(finding.summary)}.",
                "Signing it closes the loop for this e-trigger; the worklist case stays open until "
                "the result is recorded.",
                *_rule_facts(rule)[-1:],
            ]
        ),
        indicator="info",
        source=_rule_source(rule),
        links=[_case_link(base_url, finding.key)],
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
    why = "\n".join(f"- {md(r)}" for r in reasons) or "- (no explanation available)"
    detail = "\n\n".join(
        [
            f"**At this encounter** ({code(encounter_ref)}), the dxsafety model estimates a "
            f"{probability:.1%} probability that {md(label)} is diagnosed within 30 days.",
            f"**Main reasons.**\n{why}",
            f"_Model {md(model_name)}; uses only data recorded by the end of the encounter._",
        ]
    )
    return Card(
        uuid=card_uuid(key),
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
        f"**This encounter** ({code(encounter_ref)}) matches the starting pattern of the "
        f"e-trigger *{md(rule.title)}*{ppv}: it is how visits begin that are later found "
        f"to have missed {md(dx)}. Check that it has been considered before discharge.",
        "**Evidence.** " + ", ".join(code(ref) for ref in evidence) + ".",
        *_rule_facts(rule),
    ]
    return Card(
        uuid=card_uuid(key),
        summary=short(f"Consider {dx} before discharge: this visit matches {trigger}{ppv}"),
        detail="\n\n".join(detail),
        indicator="warning" if rule.level.name in ("high", "critical") else "info",
        source=_rule_source(rule),
        overrideReasons=list(OVERRIDE_REASONS),
    )
