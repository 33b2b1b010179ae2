"""Pydantic models of CDS Hooks 2.0 JSON: what arrives (requests, feedback) and what leaves
(discovery, cards).

Inbound models tolerate unknown fields and ``extension`` (spec §"Extensions"); outbound
models forbid them, and :func:`plugin.cds.schema.check_response` checks the dumped JSON
against the spec's rules again before anything is sent. Field names follow the spec's
camelCase so the models read like the spec.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, model_validator

# --- inbound --------------------------------------------------------------------------------


class _Inbound(BaseModel):
    model_config = ConfigDict(extra="allow")


class FhirAuthorization(_Inbound):
    """``fhirAuthorization``. The token is a SecretStr so no repr or log can show it."""

    access_token: SecretStr
    token_type: str = "Bearer"  # noqa: S105 - the token type, not a secret
    expires_in: int | None = None
    scope: str | None = None
    subject: str | None = None
    patient: str | None = None


class HookRequest(_Inbound):
    hook: str = Field(min_length=1)
    hookInstance: str = Field(min_length=1)
    fhirServer: str | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any]
    prefetch: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _cds_r_1(self) -> HookRequest:
        if self.fhirAuthorization is not None and not self.fhirServer:
            raise ValueError("fhirAuthorization requires fhirServer (cds-r-1)")
        return self


class PatientContext(_Inbound):
    """patient-view: ``userId`` and ``patientId`` required, ``encounterId`` optional."""

    userId: str = Field(min_length=1)
    patientId: str = Field(min_length=1)
    encounterId: str | None = None


class EncounterContext(PatientContext):
    """encounter-start / encounter-discharge: all three required."""

    encounterId: str = Field(min_length=1)


class OrderSignContext(PatientContext):
    """order-sign: ``draftOrders`` is a Bundle; its ``type`` may be missing (hook library)."""

    draftOrders: dict[str, Any]

    @model_validator(mode="after")
    def _bundle(self) -> OrderSignContext:
        if self.draftOrders.get("resourceType") != "Bundle":
            raise ValueError("draftOrders must be a FHIR Bundle")
        if not isinstance(self.draftOrders.get("entry", []), list):
            raise ValueError("draftOrders.entry must be a list")
        return self

    def draft_resources(self) -> list[dict[str, Any]]:
        entries = self.draftOrders.get("entry") or []
        if not isinstance(entries, list):
            return []
        return [
            e["resource"]
            for e in entries
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        ]


class OrderSelectContext(OrderSignContext):
    """order-select: ``selections`` (``"MedicationRequest/103"``) point into draftOrders."""

    selections: list[str] = Field(min_length=1)

    def selected_resources(self) -> list[dict[str, Any]]:
        chosen = set(self.selections)
        return [
            r for r in self.draft_resources() if f"{r.get('resourceType')}/{r.get('id')}" in chosen
        ]


class AppointmentBookContext(PatientContext):
    """appointment-book: ``appointments`` is a Bundle of proposed Appointments (the STU3
    example sends a bare array; both are accepted)."""

    appointments: dict[str, Any] | list[Any]

    @model_validator(mode="after")
    def _bundle(self) -> AppointmentBookContext:
        if isinstance(self.appointments, dict):
            if self.appointments.get("resourceType") != "Bundle":
                raise ValueError("appointments must be a FHIR Bundle")
            if not isinstance(self.appointments.get("entry", []), list):
                raise ValueError("appointments.entry must be a list")
        return self

    def appointment_resources(self) -> list[dict[str, Any]]:
        if isinstance(self.appointments, list):
            items = self.appointments
        else:
            items = [
                e.get("resource") for e in self.appointments.get("entry") or []
                if isinstance(e, dict)
            ]  # fmt: skip
        return [r for r in items if isinstance(r, dict) and r.get("resourceType") == "Appointment"]


class CodingIn(_Inbound):
    """A Coding as clients send it: the sandbox leaves out ``display``."""

    code: str | None = None
    system: str | None = None
    display: str | None = None


class OverrideReasonIn(_Inbound):
    reason: CodingIn | None = None
    userComment: str | None = None

    @model_validator(mode="after")
    def _cds_fb_3(self) -> OverrideReasonIn:
        if self.reason is None and not (self.userComment or "").strip():
            raise ValueError("overrideReason needs a reason or a userComment (cds-fb-3)")
        return self


class AcceptedSuggestion(_Inbound):
    id: str = Field(min_length=1)


class FeedbackItem(_Inbound):
    card: str = Field(min_length=1)
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] = Field(default_factory=list)
    overrideReason: OverrideReasonIn | None = None
    outcomeTimestamp: AwareDatetime

    @model_validator(mode="after")
    def _cds_fb_2(self) -> FeedbackItem:
        if self.outcome == "accepted" and not self.acceptedSuggestions:
            raise ValueError("an accepted card needs acceptedSuggestions (cds-fb-2)")
        return self


class FeedbackBatch(_Inbound):
    feedback: list[FeedbackItem]


# --- outbound -------------------------------------------------------------------------------


class _Outbound(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def to_json(self) -> dict[str, Any]:
        """The spec forbids nulls: optional fields that are unset are left out."""
        return self.model_dump(mode="json", exclude_none=True)


class Coding(_Outbound):
    code: str = Field(min_length=1)
    system: str = Field(min_length=1)
    display: str | None = None


class Source(_Outbound):
    label: str = Field(min_length=1)
    url: str | None = None
    icon: str | None = None
    topic: Coding | None = None


class Link(_Outbound):
    label: str = Field(min_length=1)
    url: str = Field(min_length=1)
    type: Literal["absolute", "smart"]
    appContext: str | None = None
    autolaunchable: bool | None = None


class Action(_Outbound):
    type: Literal["create", "update", "delete"]
    description: str = Field(min_length=1)
    resource: dict[str, Any] | None = None
    resourceId: str | None = None


class Suggestion(_Outbound):
    label: str = Field(min_length=1)
    uuid: str
    isRecommended: bool | None = None
    actions: list[Action] | None = None


class Card(_Outbound):
    uuid: str
    summary: str = Field(min_length=1, max_length=139)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None


class CdsResponse(_Outbound):
    cards: list[Card]


class ServiceDefinition(_Outbound):
    hook: str
    title: str
    description: str
    id: str
    version: str | None = None
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


class Discovery(_Outbound):
    services: list[ServiceDefinition]
