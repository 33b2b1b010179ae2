"""The services we advertise at ``GET /cds-services``.

Prefetch templates stay inside the spec's recommended query subset: one instance read
(``Patient/{{context.patientId}}``, ``Encounter/{{context.encounterId}}``) and type-level
searches by patient reference. No date filters: 2.0 has no relative-date token, and the
rules look back up to a year or more before an index event.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from plugin.cds.models import (
    AppointmentBookContext,
    EncounterContext,
    OrderSelectContext,
    OrderSignContext,
    PatientContext,
    ServiceDefinition,
)
from plugin.cds.prefetch import ENCOUNTER_TEMPLATES, PATIENT_TEMPLATES  # from the FHIR type table

Hook = Literal[
    "patient-view",
    "encounter-start",
    "encounter-discharge",
    "order-sign",
    "order-select",
    "appointment-book",
]
SPEC_VERSION = "2.0.1"  # discovery `version`: the CDS Hooks version we implement


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    id: str
    hook: Hook
    title: str
    description: str
    templates: MappingProxyType[str, str]
    context_model: type[PatientContext]

    def definition(self) -> ServiceDefinition:
        return ServiceDefinition(
            hook=self.hook,
            title=self.title,
            description=self.description,
            id=self.id,
            version=SPEC_VERSION,
            prefetch=dict(self.templates),
            usageRequirements="Prefetch every template, or send fhirServer and fhirAuthorization "
            "with read access to the patient's clinical resources; without either the service "
            "answers 412.",
        )


SERVICES: dict[str, Service] = {
    s.id: s
    for s in (
        Service(
            id="dxsafety-patient-view",
            hook="patient-view",
            title="dxsafety: open diagnostic follow-ups",
            description="Open e-trigger findings for this patient from the recent past (e.g. an "
            "abnormal test with no follow-up in the expected window), with the evidence and a "
            "link to the case in the dxsafety review worklist.",
            templates=MappingProxyType(PATIENT_TEMPLATES),
            context_model=PatientContext,
        ),
        Service(
            id="dxsafety-encounter-start",
            hook="encounter-start",
            title="dxsafety: open follow-ups at encounter start",
            description="Open e-trigger findings for this patient, shown as the encounter starts "
            "so they can be addressed during it.",
            templates=MappingProxyType(ENCOUNTER_TEMPLATES),
            context_model=EncounterContext,
        ),
        Service(
            id="dxsafety-encounter-discharge",
            hook="encounter-discharge",
            title="dxsafety: missed-diagnosis risk at discharge",
            description="The estimated risk that a dangerous diagnosis (e.g. stroke, sepsis) is "
            "being missed at this encounter, from the dxsafety model when one is configured, or "
            "from the e-trigger rules whose index pattern this discharge matches.",
            templates=MappingProxyType(ENCOUNTER_TEMPLATES),
            context_model=EncounterContext,
        ),
        Service(
            id="dxsafety-order-sign",
            hook="order-sign",
            title="dxsafety: follow-ups closed or still open at order signing",
            description="Says when a draft order closes an open diagnostic follow-up (e.g. the "
            "colonoscopy after a positive FIT), and suggests the follow-up orders still missing.",
            templates=MappingProxyType(PATIENT_TEMPLATES),
            context_model=OrderSignContext,
        ),
        Service(
            id="dxsafety-order-select",
            hook="order-select",
            title="dxsafety: a selected order closes an open follow-up",
            description="An info card when an order being selected is the expected follow-up "
            "of an open e-trigger finding (e.g. the colonoscopy after a positive FIT); nothing "
            "otherwise (the open follow-ups are shown at order-sign).",
            templates=MappingProxyType(PATIENT_TEMPLATES),
            context_model=OrderSelectContext,
        ),
        Service(
            id="dxsafety-appointment-book",
            hook="appointment-book",
            title="dxsafety: an appointment closes an open follow-up",
            description="An info card when a proposed appointment is for the expected follow-up "
            "of an open e-trigger finding; nothing otherwise.",
            templates=MappingProxyType(PATIENT_TEMPLATES),
            context_model=AppointmentBookContext,
        ),
    )
}
