"""The FHIR resource types dxsafety reads: one table, and every type list derived from it.

Each row of :data:`TYPES` says everything the rest of the code needs to know about one
resource type: how it becomes timeline events (its converter and the :class:`Kind`\\ s it
yields), how a patient's resources of that type are searched (the patient search parameter
and the date parameter for time windows), whether the CDS service prefetches it and with
which query, whether it is a patient-less shared resource (Location, Medication: read for
the resources that reference them, never searched per patient) and whether a Bulk export
asks for it (``_type``).

Adding a type is one row here (plus its converter). The lists below are projections of the
table, and their users derive theirs at import from these functions:

* :data:`plugin.fhir.client.RESOURCE_TYPES` and the client's search plan (:func:`patient_types`,
  :func:`searched_types`, :func:`date_params`); the Bulk ``_type`` of ``dxsafety scan URL``
  (:func:`bulk_types`);
* the files ``dxsafety synth`` writes (:func:`patient_types`);
* the CDS prefetch templates (:func:`plugin.cds.prefetch.patient_templates`);
* :data:`plugin.fhir.parse.CONVERTERS` and ``TIMELINE_TYPES``, the types staging keeps
  (:func:`converters`, :func:`timeline_types`), and the shared ones (:func:`shared_types`).

The timeline's :class:`Kind` stays in :mod:`plugin.timeline.model` (the timeline never imports
the FHIR edge); this table maps each type to its kinds.

:data:`R4_TYPES` is the other list: every resourceType of FHIR R4/R4B, which the reader
accepts (a type outside it is reported as unknown; one inside it but not in the table is
read and ignored).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from plugin.fhir import convert
from plugin.fhir.convert import Context
from plugin.fhir.encounter import encounter
from plugin.timeline.model import Event, Kind

__all__ = [
    "R4_TYPES",
    "TYPES",
    "Converter",
    "FhirType",
    "Prefetch",
    "bulk_types",
    "converters",
    "date_params",
    "patient_types",
    "searched_types",
    "shared_types",
    "timeline_types",
]

Converter = Callable[[dict[str, Any], Context], list[Event]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Prefetch:
    """A CDS Hooks prefetch template for one type.

    ``query`` ``None`` is the patient search (``<Type>?<patient_param>={{context.patientId}}``).
    No template has a time bound: CDS Hooks 2.0 has no relative-date token, and the rules
    look back a year or more before an index event, so a bound would have to be that wide.
    """

    key: str
    query: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FhirType:
    """One resource type the timeline reads."""

    name: str  # the FHIR resourceType
    converter: Converter | None = None  # resource -> events; None: read for references only
    kinds: tuple[Kind, ...] = ()  # the timeline kinds the converter yields
    # The search parameter naming the patient; None: not searched by patient (the Patient
    # itself is read by id; shared types are read because other resources reference them).
    patient_param: str | None = "patient"
    date_param: str | None = None  # the search parameter of its clinical date (time windows)
    prefetch: Prefetch | None = None  # what the CDS services prefetch; None: not prefetched
    shared: bool = False  # patient-less, shared by many patients' resources
    bulk: bool = True  # asked for in a Bulk export's ``_type``


# Order matters: the client fetches and the synth writer writes in this order; the Patient
# comes first (the client's search plan skips it and reads it by id when no search brings it).
TYPES: tuple[FhirType, ...] = (
    FhirType(
        name="Patient",
        converter=convert.patient_death,
        kinds=(Kind.DEATH,),
        patient_param=None,
        prefetch=Prefetch(key="patient", query="Patient/{{context.patientId}}"),
    ),
    FhirType(
        name="Encounter",
        converter=encounter,
        kinds=(Kind.ENCOUNTER, Kind.TRANSFER),
        date_param="date",
        prefetch=Prefetch(key="encounters"),
    ),
    # Condition has no date parameter on purpose: a diagnosis made before the window is what
    # tells a rule that a "new" finding was already known, so conditions are read in full.
    FhirType(
        name="Condition",
        converter=convert.condition,
        kinds=(Kind.CONDITION,),
        prefetch=Prefetch(key="conditions"),
    ),
    FhirType(
        name="Observation",
        converter=convert.observation,
        kinds=(Kind.OBSERVATION,),
        date_param="date",
        prefetch=Prefetch(key="observations"),
    ),
    FhirType(
        name="Procedure",
        converter=convert.procedure,
        kinds=(Kind.PROCEDURE,),
        date_param="date",
        prefetch=Prefetch(key="procedures"),
    ),
    FhirType(
        name="DiagnosticReport",
        converter=convert.diagnostic_report,
        kinds=(Kind.REPORT,),
        date_param="date",
        prefetch=Prefetch(key="reports"),
    ),
    FhirType(
        name="ServiceRequest",
        converter=convert.service_request,
        kinds=(Kind.ORDER,),
        date_param="authored",
        prefetch=Prefetch(key="orders"),
    ),
    FhirType(
        name="MedicationRequest",
        converter=convert.medication_request,
        kinds=(Kind.MEDICATION,),
        date_param="authoredon",
        prefetch=Prefetch(key="medications"),
    ),
    # Names and types of the places an encounter moved through (ICU detection).
    FhirType(name="Location", patient_param=None, shared=True, bulk=False),
    # The codes behind MedicationRequest.medicationReference.
    FhirType(name="Medication", patient_param=None, shared=True, bulk=False),
)


# The projections read the table when called (not at import), so each user's list is the
# table as it was when that user was imported.
def patient_types() -> tuple[str, ...]:
    """The types of one patient's record, in table order (Patient first)."""
    return tuple(t.name for t in TYPES if not t.shared)


def searched_types() -> tuple[FhirType, ...]:
    """The types searched by patient (type-level searches), in table order."""
    return tuple(t for t in TYPES if t.patient_param is not None and not t.shared)


def date_params() -> Mapping[str, str]:
    """Type → the search parameter of its clinical date, for types that have one."""
    return {t.name: t.date_param for t in TYPES if t.date_param is not None}


def bulk_types() -> tuple[str, ...]:
    """The ``_type`` list of a Bulk export, in table order."""
    return tuple(t.name for t in TYPES if t.bulk)


def converters() -> dict[str, Converter]:
    """Type → the function that turns one resource of it into timeline events."""
    return {t.name: t.converter for t in TYPES if t.converter is not None}


def timeline_types() -> frozenset[str]:
    """Every type the timeline reads (what staging keeps)."""
    return frozenset(t.name for t in TYPES)


def shared_types() -> frozenset[str]:
    """The patient-less types, kept once and joined to each patient that references them."""
    return frozenset(t.name for t in TYPES if t.shared)


# FHIR R4 (4.0.1) and R4B resource types.
R4_TYPES = frozenset(
    """Account ActivityDefinition AdministrableProductDefinition AdverseEvent AllergyIntolerance
    Appointment AppointmentResponse AuditEvent Basic Binary BiologicallyDerivedProduct
    BodyStructure Bundle CapabilityStatement CarePlan CareTeam CatalogEntry ChargeItem
    ChargeItemDefinition Citation Claim ClaimResponse ClinicalImpression ClinicalUseDefinition
    CodeSystem Communication CommunicationRequest CompartmentDefinition Composition ConceptMap
    Condition Consent Contract Coverage CoverageEligibilityRequest CoverageEligibilityResponse
    DetectedIssue Device DeviceDefinition DeviceMetric DeviceRequest DeviceUseStatement
    DiagnosticReport DocumentManifest DocumentReference EffectEvidenceSynthesis Encounter Endpoint
    EnrollmentRequest EnrollmentResponse EpisodeOfCare EventDefinition Evidence EvidenceReport
    EvidenceVariable ExampleScenario ExplanationOfBenefit FamilyMemberHistory Flag Goal
    GraphDefinition Group GuidanceResponse HealthcareService ImagingStudy Immunization
    ImmunizationEvaluation ImmunizationRecommendation ImplementationGuide Ingredient InsurancePlan
    Invoice Library Linkage List Location ManufacturedItemDefinition Measure MeasureReport Media
    Medication MedicationAdministration MedicationDispense MedicationKnowledge MedicationRequest
    MedicationStatement MedicinalProduct MedicinalProductAuthorization
    MedicinalProductContraindication MedicinalProductDefinition MedicinalProductIndication
    MedicinalProductIngredient MedicinalProductInteraction MedicinalProductManufactured
    MedicinalProductPackaged MedicinalProductPharmaceutical MedicinalProductUndesirableEffect
    MessageDefinition MessageHeader MolecularSequence NamingSystem NutritionOrder NutritionProduct
    Observation ObservationDefinition OperationDefinition OperationOutcome Organization
    OrganizationAffiliation PackagedProductDefinition Parameters Patient PaymentNotice
    PaymentReconciliation Person PlanDefinition Practitioner PractitionerRole Procedure Provenance
    Questionnaire QuestionnaireResponse RegulatedAuthorization RelatedPerson RequestGroup
    ResearchDefinition ResearchElementDefinition ResearchStudy ResearchSubject RiskAssessment
    RiskEvidenceSynthesis Schedule SearchParameter ServiceRequest Slot Specimen SpecimenDefinition
    StructureDefinition StructureMap Subscription SubscriptionStatus SubscriptionTopic Substance
    SubstanceDefinition SubstanceNucleicAcid SubstancePolymer SubstanceProtein
    SubstanceReferenceInformation SubstanceSourceMaterial SubstanceSpecification SupplyDelivery
    SupplyRequest Task TerminologyCapabilities TestReport TestScript ValueSet VerificationResult
    VisionPrescription""".split()
)
